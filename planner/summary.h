// What tpp-plan prints before there are plans: the model (parameters and weight bytes by
// component) and the cluster (GPUs, memory, links), as text or as one JSON object.
// JSON field names are a contract (scripts read them): model.name, model.params_total,
// model.weight_bytes, cluster.nodes, cluster.gpus_per_node, cluster.gpu.name,
// cluster.gpu.memory_bytes; later issues add plans[].
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "hardware_profiles/hardware.h"
#include "model/model.h"

namespace tpp::planner {

nlohmann::json model_json(const model::Model& m);
nlohmann::json cluster_json(const hw::Cluster& c);
std::string model_text(const model::Model& m);
std::string cluster_text(const hw::Cluster& c);

// 1234567 -> "1,234,567"; bytes -> "1.23 GiB".
std::string with_commas(std::int64_t v);
std::string gib(double bytes);

}  // namespace tpp::planner
