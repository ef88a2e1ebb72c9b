#include "common/doc.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

namespace tpp {
namespace {

constexpr std::size_t kMaxNodes = 200000;  // bounds YAML alias expansion ("billion laughs")

std::pair<int, int> line_col_at(const std::string& text, std::size_t offset) {
  int line = 1, col = 1;
  for (std::size_t k = 0; k < offset && k < text.size(); ++k) {
    if (text[k] == '\n') { ++line; col = 1; } else { ++col; }
  }
  return {line, col};
}

// Deepest bracket nesting outside quoted strings; rejects inputs that would drive the
// recursive parsers too deep before they see them. Returns the offset of the first bracket
// past the limit, or npos.
std::size_t too_deep_at(const std::string& text) {
  int depth = 0;
  char quote = 0;
  for (std::size_t k = 0; k < text.size(); ++k) {
    char c = text[k];
    if (quote) {
      if (c == '\\' && quote == '"') ++k;
      else if (c == quote) quote = 0;
      continue;
    }
    if (c == '"' || c == '\'') quote = c;
    else if (c == '[' || c == '{') { if (++depth > kMaxDepth) return k; }
    else if (c == ']' || c == '}') { if (depth > 0) --depth; }
  }
  return std::string::npos;
}

// Block nesting: a YAML line indented by more than 4 * kMaxDepth columns, or opening more than
// kMaxDepth block sequences ("- - - ..."), is rejected for the same reason.
std::size_t too_deep_block_at(const std::string& text) {
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t k = start;
    int dashes = 0;
    while (k < text.size() && (text[k] == ' ' || text[k] == '-' || text[k] == '\t')) {
      if (text[k] == '-') ++dashes;
      ++k;
    }
    if (k - start > 4u * kMaxDepth || dashes > kMaxDepth) return start;
    std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return std::string::npos;
}

bool parse_int(const std::string& s, std::int64_t* out) {
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (b != e && *b == '+') ++b;
  auto r = std::from_chars(b, e, *out);
  return r.ec == std::errc() && r.ptr == e && b != e;
}

bool parse_float(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(*out) &&
         s.find_first_of("xXpP") == std::string::npos;  // no hex floats, no inf/nan
}

void classify_plain_scalar(Node* n) {
  const std::string& s = n->text;
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    n->kind = Node::Kind::Null;
  } else if (s == "true" || s == "True" || s == "TRUE") {
    n->kind = Node::Kind::Bool; n->b = true;
  } else if (s == "false" || s == "False" || s == "FALSE") {
    n->kind = Node::Kind::Bool; n->b = false;
  } else if (parse_int(s, &n->i)) {
    n->kind = Node::Kind::Int; n->f = static_cast<double>(n->i);
  } else if (parse_float(s, &n->f)) {
    n->kind = Node::Kind::Float;
  } else {
    n->kind = Node::Kind::String;
  }
}

struct YamlConverter {
  const std::string& file;
  std::size_t nodes = 0;

  Expected<Node> convert(const YAML::Node& y, int depth) {
    Node n;
    n.line = y.Mark().line + 1;
    n.col = y.Mark().column + 1;
    if (++nodes > kMaxNodes)
      return make_error(file, n.line, n.col, "document too large (more than 200000 nodes)");
    if (depth > kMaxDepth)
      return make_error(file, n.line, n.col, "nesting deeper than 64 levels");
    switch (y.Type()) {
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        n.kind = Node::Kind::Null;
        break;
      case YAML::NodeType::Scalar:
        n.text = y.Scalar();
        if (y.Tag() == "!") n.kind = Node::Kind::String;  // quoted: always a string
        else classify_plain_scalar(&n);
        break;
      case YAML::NodeType::Sequence:
        n.kind = Node::Kind::Seq;
        for (const auto& item : y) {
          auto c = convert(item, depth + 1);
          if (!c) return c.error();
          n.items.push_back(std::move(*c));
        }
        break;
      case YAML::NodeType::Map:
        n.kind = Node::Kind::Map;
        std::unordered_map<std::string, std::size_t> seen;  // key -> index: linear, not O(n^2)
        for (const auto& kv : y) {
          int kl = kv.first.Mark().line + 1, kc = kv.first.Mark().column + 1;
          if (!kv.first.IsScalar())
            return make_error(file, kl, kc, "map keys must be plain names");
          std::string key = kv.first.Scalar();
          if (auto [it, fresh] = seen.emplace(key, n.fields.size()); !fresh)
            return make_error(file, kl, kc,
                              "duplicate key '" + clip(key) + "' (first at line " +
                                  std::to_string(n.key_pos[it->second].first) + ")");
          auto c = convert(kv.second, depth + 1);
          if (!c) return c.error();
          n.fields.emplace_back(key, std::move(*c));
          n.key_pos.emplace_back(kl, kc);
        }
        break;
    }
    return n;
  }
};

// Positions of object keys in JSON text, by path ("a/b", "a/[]/c" inside an array) and in
// document order. nlohmann-json 3.11 keeps no source positions, so after it has validated the
// syntax this scan finds where each key was written.
using KeyPositions = std::map<std::string, std::pair<int, int>>;
struct JsonKeys {
  KeyPositions by_path;                      // the first key written at each path
  std::vector<std::pair<int, int>> in_order;  // every key, in the order the parser meets them
};

JsonKeys scan_json_keys(const std::string& text) {
  JsonKeys out;
  struct Frame { bool object; std::string path; };
  std::vector<Frame> stack;
  std::string last_key;
  bool after_key = false;  // the next container is the value of last_key
  int line = 1, col = 1;
  auto advance = [&](char c) { if (c == '\n') { ++line; col = 1; } else { ++col; } };
  for (std::size_t k = 0; k < text.size(); ++k) {
    char c = text[k];
    if (c == '"') {
      int kl = line, kc = col;
      std::string s;
      advance(c);
      for (++k; k < text.size() && text[k] != '"'; ++k) {
        if (text[k] == '\\' && k + 1 < text.size()) { advance(text[k]); ++k; }
        s += text[k];
        advance(text[k]);
      }
      advance('"');
      std::size_t j = k + 1;
      while (j < text.size() && std::isspace(static_cast<unsigned char>(text[j]))) ++j;
      if (j < text.size() && text[j] == ':' && !stack.empty() && stack.back().object) {
        last_key = stack.back().path + s;
        out.by_path.emplace(last_key, std::make_pair(kl, kc));
        out.in_order.emplace_back(kl, kc);
        after_key = true;
      }
      continue;
    }
    if (c == '{' || c == '[') {
      std::string path;
      if (!stack.empty()) path = after_key ? last_key + "/" : stack.back().path + "[]/";
      stack.push_back({c == '{', path});
      after_key = false;
    } else if (c == '}' || c == ']') {
      if (!stack.empty()) stack.pop_back();
      after_key = false;
    } else if (c == ',') {
      after_key = false;
    }
    advance(c);
  }
  return out;
}

// The first key written twice in one object, as the parser meets keys: its ordinal and that of
// its first occurrence. nlohmann-json keeps the last value silently; a config must not.
struct DuplicateKey {
  std::size_t at = 0, first = 0;
  std::string key;
};

class DuplicateFinder {
 public:
  bool operator()(int, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    switch (ev) {
      case E::object_start: stack_.emplace_back(Seen{}); break;
      case E::array_start: stack_.emplace_back(std::nullopt); break;
      case E::object_end:
      case E::array_end:
        if (!stack_.empty()) stack_.pop_back();
        break;
      case E::key:
        if (!dup_ && !stack_.empty() && stack_.back()) {
          std::string k = parsed.get<std::string>();
          auto [it, fresh] = stack_.back()->emplace(k, keys_);
          if (!fresh) dup_ = DuplicateKey{keys_, it->second, k};
        }
        ++keys_;
        break;
      default: break;
    }
    return true;
  }
  const std::optional<DuplicateKey>& duplicate() const { return dup_; }

 private:
  using Seen = std::unordered_map<std::string, std::size_t>;
  std::vector<std::optional<Seen>> stack_;
  std::size_t keys_ = 0;
  std::optional<DuplicateKey> dup_;
};

Node from_json(const nlohmann::json& j, const KeyPositions& pos, const std::string& path,
               std::pair<int, int> at) {
  Node n;
  n.line = at.first;
  n.col = at.second;
  switch (j.type()) {
    case nlohmann::json::value_t::null: n.kind = Node::Kind::Null; n.text = "null"; break;
    case nlohmann::json::value_t::boolean:
      n.kind = Node::Kind::Bool; n.b = j.get<bool>(); n.text = n.b ? "true" : "false"; break;
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      if (j.is_number_unsigned() && j.get<std::uint64_t>() > INT64_MAX) {
        n.kind = Node::Kind::Float; n.f = j.get<double>();
      } else {
        n.kind = Node::Kind::Int; n.i = j.get<std::int64_t>(); n.f = static_cast<double>(n.i);
      }
      n.text = j.dump();
      break;
    case nlohmann::json::value_t::number_float:
      n.kind = Node::Kind::Float; n.f = j.get<double>(); n.text = j.dump(); break;
    case nlohmann::json::value_t::string:
      n.kind = Node::Kind::String; n.text = j.get<std::string>(); break;
    case nlohmann::json::value_t::array:
      n.kind = Node::Kind::Seq;
      for (const auto& item : j)
        n.items.push_back(from_json(item, pos, path.empty() ? "[]" : path + "/[]", at));
      break;
    case nlohmann::json::value_t::object:
      n.kind = Node::Kind::Map;
      for (const auto& [key, value] : j.items()) {
        std::string p = path.empty() ? key : path + "/" + key;
        auto it = pos.find(p);
        auto kp = it == pos.end() ? at : it->second;
        n.fields.emplace_back(key, from_json(value, pos, p, kp));
        n.key_pos.push_back(kp);
      }
      break;
    default:
      n.kind = Node::Kind::Null;  // binary and discarded values cannot come from text
  }
  return n;
}

Expected<Doc> check_depth(const std::string& text, const std::string& file, bool yaml) {
  std::size_t at = too_deep_at(text);
  if (at == std::string::npos && yaml) at = too_deep_block_at(text);
  if (at != std::string::npos) {
    auto [l, c] = line_col_at(text, at);
    return make_error(file, l, c, "nesting deeper than 64 levels");
  }
  return Doc{};
}

}  // namespace

const Node* Node::find(const std::string& key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return &v;
  return nullptr;
}

const char* Node::kind_name(Kind k) {
  switch (k) {
    case Kind::Null: return "null";
    case Kind::Bool: return "a boolean";
    case Kind::Int: return "an integer";
    case Kind::Float: return "a number";
    case Kind::String: return "a string";
    case Kind::Seq: return "a list";
    case Kind::Map: return "a map";
  }
  return "?";
}

Expected<Doc> parse_yaml(const std::string& text, const std::string& file) {
  if (text.find('\0') != std::string::npos)
    return make_error(file, 1, 1, "input is binary (NUL byte)");
  if (auto d = check_depth(text, file, true); !d) return d.error();
  YAML::Node y;
  try {
    y = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return make_error(file, e.mark.line + 1, e.mark.column + 1, "YAML syntax: " + e.msg);
  }
  YamlConverter conv{file};
  Expected<Node> root = make_error(file, 1, 1, "internal");
  try {
    root = conv.convert(y, 0);
  } catch (const YAML::Exception& e) {
    return make_error(file, e.mark.line + 1, e.mark.column + 1, "YAML: " + e.msg);
  }
  if (!root) return root.error();
  return Doc{file, std::move(*root)};
}

Expected<Doc> parse_json(const std::string& text, const std::string& file) {
  if (auto d = check_depth(text, file, false); !d) return d.error();
  nlohmann::json j;
  DuplicateFinder dups;
  try {
    j = nlohmann::json::parse(text, std::ref(dups));
  } catch (const nlohmann::json::parse_error& e) {
    auto [l, c] = line_col_at(text, e.byte > 0 ? e.byte - 1 : 0);
    std::string msg = e.what();
    std::size_t colon = msg.find(": ", msg.find("parse error"));
    if (colon != std::string::npos) msg = msg.substr(colon + 2);
    // nlohmann appends "; last read: '<the bytes it read>'": never echo the file's contents.
    if (std::size_t last = msg.find("; last read"); last != std::string::npos) msg.resize(last);
    return make_error(file, l, c, "JSON syntax: " + msg);
  } catch (const nlohmann::json::exception& e) {
    return make_error(file, 1, 1, std::string("JSON: ") + e.what());
  }
  JsonKeys keys = scan_json_keys(text);
  if (const auto& d = dups.duplicate()) {
    auto at = d->at < keys.in_order.size() ? keys.in_order[d->at] : std::make_pair(1, 1);
    auto first = d->first < keys.in_order.size() ? keys.in_order[d->first] : at;
    return make_error(file, at.first, at.second,
                      "duplicate key '" + clip(d->key) + "' (first at line " +
                          std::to_string(first.first) + ")");
  }
  return Doc{file, from_json(j, keys.by_path, "", {1, 1})};
}

Expected<Doc> load_yaml_file(const std::string& path) {
  auto text = read_text_file(path, "YAML");
  if (!text) return text.error();
  return parse_yaml(*text, path);
}

Expected<Doc> load_json_file(const std::string& path) {
  auto text = read_text_file(path, "JSON");
  if (!text) return text.error();
  return parse_json(*text, path);
}

}  // namespace tpp
