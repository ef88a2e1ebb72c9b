// Internal to model/: the consistency checks both readers share.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>

#include "common/doc.h"
#include "common/fields.h"
#include "common/status.h"
#include "model/model.h"

namespace tpp::model {

// Where each field of the Model was written, by the Model field's name
// ("num_key_value_heads", "num_experts_per_tok", ...), for messages.
struct FieldPositions {
  std::string file;
  std::pair<int, int> fallback{1, 1};
  std::map<std::string, std::pair<int, int>> at;
  std::map<std::string, std::string> written_as;  // Model field -> key in the file

  // Records the key of `map` (if present) as the position of Model field `field`.
  void note(const Node& map, const std::string& key, const std::string& field);
  // Records every key of `map` as the position of the Model field of the same name: one pass,
  // so a config of 100,000 keys stays linear.
  void note_all(const Node& map);
  Error error(const std::string& field, const std::string& message) const;
  std::string key(const std::string& field) const;
};

// Whether head_dim was given in the file or derived from hidden_size / num_attention_heads.
struct ValidationHints {
  bool head_dim_explicit = false;
  bool head_dim_must_match_hidden = false;  // architectures that derive head_dim themselves
};

// The MLA fields, which tpp's YAML (section mla) and DeepSeek configs (top level) spell alike.
// q_lora_rank absent, null or 0: no query compression.
Mla read_mla_fields(Fields& f);

std::optional<Error> validate_model(const Model& m, const FieldPositions& pos,
                                    const ValidationHints& hints);

}  // namespace tpp::model
