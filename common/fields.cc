#include "common/fields.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace tpp {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

bool within_edits(const std::string& a, const std::string& b, std::size_t k) {
  const std::size_t la = a.size(), lb = b.size();
  if ((la > lb ? la - lb : lb - la) > k) return false;
  // Only cells within k of the diagonal can hold a distance <= k (Ukkonen's band): O(k n).
  const std::size_t kInf = k + 1;
  std::vector<std::size_t> row(lb + 1, kInf), next(lb + 1, kInf);
  for (std::size_t j = 0; j <= std::min(lb, k); ++j) row[j] = j;
  for (std::size_t i = 1; i <= la; ++i) {
    const std::size_t lo = i > k ? i - k : 0, hi = std::min(lb, i + k);
    std::fill(next.begin(), next.end(), kInf);
    if (lo == 0) next[0] = i <= k ? i : kInf;
    std::size_t best = next[0];
    for (std::size_t j = std::max<std::size_t>(lo, 1); j <= hi; ++j) {
      std::size_t v = row[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      v = std::min({v, row[j] + 1, next[j - 1] + 1, kInf});
      next[j] = v;
      best = std::min(best, v);
    }
    if (best > k) return false;
    row.swap(next);
  }
  return row[lb] <= k;
}

std::string nearest(const std::string& key, const std::vector<std::string>& candidates) {
  if (key.size() > 256) return "";  // no name is that long: nothing to suggest
  std::string best;
  std::size_t best_d = SIZE_MAX;
  for (const auto& c : candidates) {
    std::size_t d = edit_distance(key, c);
    if (d < best_d) { best_d = d; best = c; }
  }
  return best;
}

namespace {
std::string fmt_num(double v) {
  std::ostringstream ss;
  ss << v;
  return ss.str();
}
std::string shown(const Node& n) {
  if (n.kind == Node::Kind::Map) return "a map";
  if (n.kind == Node::Kind::Seq) return "a list";
  return "'" + clip(n.text, 40) + "'";
}
}  // namespace

Fields::Fields(const Doc& doc, const Node& map, std::string section, Strictness strictness)
    : doc_(doc), map_(map), section_(std::move(section)), strictness_(strictness) {}

bool Fields::check_map() {
  if (error_) return false;
  if (map_.kind != Node::Kind::Map) {
    // The kind only, never the text: a file that is not YAML at all (a path that named the
    // wrong file) parses as one long scalar, and its contents are not ours to print.
    error_ = make_error(doc_.file, map_.line, map_.col,
                        section_ + " must be a map of fields, got " +
                            Node::kind_name(map_.kind) +
                            (&map_ == &doc_.root ? " (is this a " + section_ + " file?)" : ""));
    return false;
  }
  return true;
}

bool Fields::has(const std::string& key) const {
  const Node* n = map_.is_map() ? map_.find(key) : nullptr;
  return n && n->kind != Node::Kind::Null;
}

const Node* Fields::lookup(const std::string& key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.push_back(key);
  if (!check_map()) return nullptr;
  const Node* n = map_.find(key);
  return (n && n->kind != Node::Kind::Null) ? n : nullptr;
}

const Node* Fields::raw(const std::string& key) { return lookup(key); }

void Fields::allow(const std::vector<std::string>& keys) {
  allowed_.insert(allowed_.end(), keys.begin(), keys.end());
}

std::pair<int, int> Fields::key_pos(const std::string& key) const {
  for (std::size_t k = 0; k < map_.fields.size(); ++k)
    if (map_.fields[k].first == key) return map_.key_pos[k];
  return {map_.line, map_.col};
}

void Fields::fail(const std::string& key, const std::string& message) {
  if (error_) return;
  auto [l, c] = key_pos(key);
  error_ = make_error(doc_.file, l, c, message);
}

void Fields::fail_at(const Node& node, const std::string& message) {
  if (!error_) error_ = make_error(doc_.file, node.line, node.col, message);
}

void Fields::missing(const std::string& key) {
  if (error_) return;
  // A present key one or two edits away that the loader has not claimed is the likely typo:
  // point at it rather than at the map.
  if (map_.is_map()) {
    for (std::size_t k = 0; k < map_.fields.size(); ++k) {
      const std::string& present = map_.fields[k].first;
      if (std::find(known_.begin(), known_.end(), present) != known_.end()) continue;
      if (present.size() >= 4 && within_edits(present, key, 2)) {
        auto [l, c] = map_.key_pos[k];
        error_ = make_error(doc_.file, l, c,
                            "unknown key '" + clip(present) + "' in " + section_ +
                                " (did you mean '" + key + "'?)");
        return;
      }
    }
  }
  fail(key, "missing required field '" + key + "' in " + section_);
}

void Fields::type_error(const std::string& key, const Node& n, const char* expected) {
  fail(key, "field '" + key + "' in " + section_ + " must be " + expected + ", got " + shown(n));
}

std::int64_t Fields::integer(const std::string& key, std::int64_t min, std::int64_t max) {
  const Node* n = lookup(key);
  if (error_) return min;
  if (!n) {
    missing(key);
    return min;
  }
  return integer_or(key, min, min, max);
}

std::int64_t Fields::integer_or(const std::string& key, std::int64_t fallback, std::int64_t min,
                                std::int64_t max) {
  const Node* n = lookup(key);
  if (error_ || !n) return fallback;
  if (n->kind != Node::Kind::Int) {
    type_error(key, *n, "an integer");
    return fallback;
  }
  if (n->i < min) {
    fail(key, "field '" + key + "' in " + section_ + " must be at least " + std::to_string(min) +
                  ", got " + std::to_string(n->i));
    return fallback;
  }
  if (n->i > max) {
    fail(key, "field '" + key + "' in " + section_ + " must be at most " + std::to_string(max) +
                  ", got " + std::to_string(n->i));
    return fallback;
  }
  return n->i;
}

double Fields::number(const std::string& key, double min, double max) {
  const Node* n = lookup(key);
  if (error_) return min;
  if (!n) {
    missing(key);
    return min;
  }
  return number_or(key, min, min, max);
}

double Fields::number_or(const std::string& key, double fallback, double min, double max) {
  const Node* n = lookup(key);
  if (error_ || !n) return fallback;
  if (n->kind != Node::Kind::Int && n->kind != Node::Kind::Float) {
    type_error(key, *n, "a number");
    return fallback;
  }
  if (!(n->f >= min) || !(n->f <= max)) {
    fail(key, "field '" + key + "' in " + section_ + " must be between " + fmt_num(min) +
                  " and " + fmt_num(max) + ", got " + n->text);
    return fallback;
  }
  return n->f;
}

bool Fields::boolean_or(const std::string& key, bool fallback) {
  const Node* n = lookup(key);
  if (error_ || !n) return fallback;
  if (n->kind != Node::Kind::Bool) {
    type_error(key, *n, "true or false");
    return fallback;
  }
  return n->b;
}

std::string Fields::string(const std::string& key) {
  const Node* n = lookup(key);
  if (error_) return "";
  if (!n) {
    missing(key);
    return "";
  }
  return string_or(key, "");
}

std::string Fields::string_or(const std::string& key, const std::string& fallback) {
  const Node* n = lookup(key);
  if (error_ || !n) return fallback;
  if (n->kind == Node::Kind::Map || n->kind == Node::Kind::Seq) {
    type_error(key, *n, "a string");
    return fallback;
  }
  if (n->text.empty()) {
    fail(key, "field '" + key + "' in " + section_ + " must not be empty");
    return fallback;
  }
  return n->text;
}

static std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

std::string Fields::choice(const std::string& key, const std::vector<std::string>& allowed) {
  std::string v = string(key);
  if (error_) return allowed.front();
  return choice_or(key, allowed.front(), allowed);
}

std::string Fields::choice_or(const std::string& key, const std::string& fallback,
                              const std::vector<std::string>& allowed) {
  std::string v = string_or(key, fallback);
  if (error_) return fallback;
  if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
    std::string near = nearest(v, allowed);
    fail(key, "field '" + key + "' in " + section_ + " is '" + v + "', expected one of: " +
                  join(allowed) + (near.empty() ? "" : " (did you mean '" + near + "'?)"));
    return fallback;
  }
  return v;
}

std::vector<std::int64_t> Fields::int_list_or(const std::string& key, std::int64_t min,
                                              std::int64_t max) {
  std::vector<std::int64_t> out;
  const Node* n = lookup(key);
  if (error_ || !n) return out;
  if (n->kind != Node::Kind::Seq) {
    type_error(key, *n, "a list of integers");
    return out;
  }
  for (const Node& item : n->items) {
    if (item.kind != Node::Kind::Int || item.i < min || item.i > max) {
      fail(key, "field '" + key + "' in " + section_ + " must hold integers from " +
                    std::to_string(min) + " to " + std::to_string(max) + ", got " + shown(item));
      return {};
    }
    out.push_back(item.i);
  }
  return out;
}

std::vector<std::string> Fields::string_list_or(const std::string& key) {
  std::vector<std::string> out;
  const Node* n = lookup(key);
  if (error_ || !n) return out;
  if (n->kind != Node::Kind::Seq) {
    type_error(key, *n, "a list of strings");
    return out;
  }
  for (const Node& item : n->items) {
    if (item.kind == Node::Kind::Map || item.kind == Node::Kind::Seq) {
      type_error(key, item, "a list of strings");
      return {};
    }
    out.push_back(item.text);
  }
  return out;
}

const Node* Fields::map_or_null(const std::string& key) {
  const Node* n = lookup(key);
  if (error_ || !n) return nullptr;
  if (n->kind != Node::Kind::Map) {
    type_error(key, *n, "a map");
    return nullptr;
  }
  return n;
}

std::optional<Error> Fields::finish() {
  if (error_ || !check_map()) return error_;
  std::vector<std::string> absent;
  for (const auto& k : known_)
    if (!map_.find(k)) absent.push_back(k);
  for (std::size_t k = 0; k < map_.fields.size(); ++k) {
    const std::string& key = map_.fields[k].first;
    if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
    if (std::find(allowed_.begin(), allowed_.end(), key) != allowed_.end()) continue;
    auto [l, c] = map_.key_pos[k];
    if (strictness_ == Strictness::kStrict) {
      // Suggest the nearest key when it is plausibly what was meant, else list them all.
      std::string near = nearest(key, known_);
      bool close = !near.empty() && edit_distance(key, near) <= std::max<std::size_t>(
                                                                   2, near.size() / 2);
      std::string all;
      for (const auto& x : known_) all += (all.empty() ? "" : ", ") + x;
      error_ = make_error(doc_.file, l, c,
                          "unknown key '" + clip(key) + "' in " + section_ +
                              (close ? " (did you mean '" + near + "'?)"
                                     : " (valid keys: " + all + ")"));
      return error_;
    }
    // Lenient: only a near miss of a key we looked for and did not find is a typo. A banded
    // check, so that a config of 100,000 keys stays linear.
    if (key.size() < 5) continue;
    for (const auto& a : absent) {
      if (within_edits(key, a, 2)) {
        error_ = make_error(doc_.file, l, c,
                            "unknown key '" + clip(key) + "' in " + section_ + " (did you mean '" +
                                nearest(key, absent) + "'?)");
        return error_;
      }
    }
  }
  return std::nullopt;
}

}  // namespace tpp
