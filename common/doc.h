// A small, format-neutral document tree with source positions, built from YAML (yaml-cpp) or
// JSON (nlohmann-json). Loaders read models, GPUs and clusters from it through `Fields`
// (fields.h), so both formats get the same strict checks and the same error texts.
//
// load_yaml_file / load_json_file reject, with one Error naming the file and position:
// anything but a regular file, an unreadable file, an empty file, a binary file (a NUL byte), a
// file over kMaxInputBytes (common/file.h), nesting deeper than kMaxDepth, a key given twice in
// one map (YAML and JSON alike), and any syntax error of the format. Messages name the problem,
// never the file's contents.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/file.h"
#include "common/status.h"

namespace tpp {

inline constexpr int kMaxDepth = 64;                      // guards the recursive parsers

struct Node {
  enum class Kind { Null, Bool, Int, Float, String, Seq, Map };
  Kind kind = Kind::Null;
  std::string text;  // the scalar as written (empty for Seq/Map)
  bool b = false;
  std::int64_t i = 0;
  double f = 0.0;    // also set for Int
  std::vector<Node> items;                          // Seq
  std::vector<std::pair<std::string, Node>> fields; // Map, in file order
  std::vector<std::pair<int, int>> key_pos;         // Map: (line, col) of each key
  int line = 0, col = 0;                            // 1-based position of the value

  bool is_map() const { return kind == Kind::Map; }
  const Node* find(const std::string& key) const;
  // Human name of a kind: "an integer", "a map", ...
  static const char* kind_name(Kind k);
};

struct Doc {
  std::string file;  // the path as the user gave it, used in messages
  Node root;
};

Expected<Doc> load_yaml_file(const std::string& path);
Expected<Doc> load_json_file(const std::string& path);
// The same on text already read (the fuzz test uses these).
Expected<Doc> parse_yaml(const std::string& text, const std::string& file);
Expected<Doc> parse_json(const std::string& text, const std::string& file);

}  // namespace tpp
