// Strict field access on one map of a Doc: typed getters with bounds, unknown-key detection
// with a "did you mean" suggestion, and the first error kept with its file, line and column.
//
//   Fields f(doc, node, "model");
//   std::int64_t hidden = f.integer("hidden_size", 1, kMaxHidden);
//   ...
//   if (auto err = f.finish()) return *err;
//
// Getters never throw; after the first error they return their fallback and record nothing
// more, so a loader can read straight through and check once at the end.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/doc.h"

namespace tpp {

enum class Strictness {
  kStrict,   // every key must be one the loader reads (tpp's own YAML files)
  kLenient,  // unknown keys are allowed (Hugging Face configs carry dozens), except a near
             // miss of a key the loader looked for and did not find: that is a typo
};

// Levenshtein distance; and the candidate nearest to `key` ("" when there is none).
std::size_t edit_distance(const std::string& a, const std::string& b);
std::string nearest(const std::string& key, const std::vector<std::string>& candidates);
// edit_distance(a, b) <= k, in O(k x length).
bool within_edits(const std::string& a, const std::string& b, std::size_t k);

class Fields {
 public:
  // `section` names the map in messages ("model", "moe", "gpu", ...). If `map` is not a map,
  // the first getter reports that.
  Fields(const Doc& doc, const Node& map, std::string section,
         Strictness strictness = Strictness::kStrict);

  bool has(const std::string& key) const;
  const Node* raw(const std::string& key);  // marks the key known; nullptr when absent
  // Keys that may be present and are not read (lenient mode): never taken for typos.
  void allow(const std::vector<std::string>& keys);

  std::int64_t integer(const std::string& key, std::int64_t min, std::int64_t max);
  std::int64_t integer_or(const std::string& key, std::int64_t fallback, std::int64_t min,
                          std::int64_t max);  // absent or null -> fallback
  double number(const std::string& key, double min, double max);
  double number_or(const std::string& key, double fallback, double min, double max);
  bool boolean_or(const std::string& key, bool fallback);
  std::string string(const std::string& key);
  std::string string_or(const std::string& key, const std::string& fallback);
  // One of `allowed`; the message lists them.
  std::string choice(const std::string& key, const std::vector<std::string>& allowed);
  std::string choice_or(const std::string& key, const std::string& fallback,
                        const std::vector<std::string>& allowed);
  std::vector<std::int64_t> int_list_or(const std::string& key, std::int64_t min,
                                        std::int64_t max);  // absent -> empty
  std::vector<std::string> string_list_or(const std::string& key);
  // A nested map; nullptr when absent or null. Not a map -> error.
  const Node* map_or_null(const std::string& key);

  // A required key is absent: reports it, or the near-miss key that was probably meant.
  void missing(const std::string& key);
  // Records an error at the key (or at the map when the key is absent).
  void fail(const std::string& key, const std::string& message);
  void fail_at(const Node& node, const std::string& message);
  // Adopts an error found elsewhere (a nested map read by its own Fields), if none is kept yet.
  void adopt(const Error& e) { if (!error_) error_ = e; }

  bool ok() const { return !error_.has_value(); }
  // Checks unknown keys and returns the first error, if any.
  std::optional<Error> finish();

  const Doc& doc() const { return doc_; }
  const std::string& section() const { return section_; }

 private:
  const Node* lookup(const std::string& key);
  bool check_map();
  std::pair<int, int> key_pos(const std::string& key) const;
  void type_error(const std::string& key, const Node& n, const char* expected);

  const Doc& doc_;
  const Node& map_;
  std::string section_;
  Strictness strictness_;
  std::vector<std::string> known_;
  std::vector<std::string> allowed_;
  std::optional<Error> error_;
};

}  // namespace tpp
