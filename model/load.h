// Reading models. load_model() takes tpp's own YAML (docs/model-schema.md) or a Hugging Face
// config.json (a .json file, or a directory holding config.json) and returns a validated
// Model, or one Error naming the file, line, column and field.
#pragma once

#include <string>
#include <vector>

#include "common/doc.h"
#include "common/status.h"
#include "model/model.h"

namespace tpp::model {

// Hugging Face architectures the config reader understands.
const std::vector<std::string>& supported_architectures();

Expected<Model> load_model(const std::string& path);
// The readers behind it, on an already parsed document.
Expected<Model> model_from_yaml(const Doc& doc);
Expected<Model> model_from_hf_config(const Doc& doc);

}  // namespace tpp::model
