// Reading models. load_model() takes tpp's own YAML (docs/model-schema.md) or a Hugging Face
// config.json (a .json file, or a directory holding config.json) and returns a validated
// Model, or one Error naming the file, line, column and field.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/doc.h"
#include "common/status.h"
#include "model/model.h"

namespace tpp::model {

// Hugging Face architectures the config reader understands.
const std::vector<std::string>& supported_architectures();

Expected<Model> load_model(const std::string& path);
// The model in tpp's own schema, as JSON (what a plan file embeds); model_from_yaml() on the
// parsed JSON reads it back to an equal Model (but for `source` and `architecture`).
nlohmann::json model_to_json(const Model& m);

// The readers behind it, on an already parsed document.
Expected<Model> model_from_yaml(const Doc& doc);
Expected<Model> model_from_hf_config(const Doc& doc);

}  // namespace tpp::model
