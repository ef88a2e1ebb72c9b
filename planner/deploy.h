// Deployment files for a plan (tpp-plan -o PLAN.json writes them beside it): a Kubernetes
// manifest and a Slurm batch script that start the plan's engine with the plan's split.
//
// Kubernetes: a Deployment where one server fits one host, a LeaderWorkerSet
// (leaderworkerset.x-k8s.io/v1, the way llm-d and the LWS project deploy multi-node vLLM:
// kubernetes-sigs/lws docs/examples/vllm/GPU/lws.yaml) where it spans hosts: one group a
// server, `size` its hosts, the leader starting Ray's head (vLLM), the rank-0 process
// (SGLang) or mpirun (TensorRT-LLM), the workers joining it at $(LWS_LEADER_ADDRESS); a Service
// in front of the leaders. Slurm: one job a server (an array of them for several servers), one
// task a host, the engine's own multi-node start (vLLM on Ray, SGLang's --node-rank from
// SLURM_NODEID, TensorRT-LLM one MPI rank a GPU under trtllm-llmapi-launch).
#pragma once

#include <string>

#include "hardware_profiles/hardware.h"
#include "model/model.h"
#include "simulator/memory.h"

namespace tpp::planner {

struct DeploymentFiles {
  std::string kubernetes;  // YAML, one or more documents
  std::string slurm;       // a bash script with #SBATCH directives
};

DeploymentFiles deployment_files(const model::Model& m, const hw::Cluster& c, const sim::MemoryPlan& plan);

// Where they go beside PLAN: "plan.json" -> "plan.k8s.yaml", "plan.sbatch".
std::string kubernetes_path(const std::string& plan_path);
std::string slurm_path(const std::string& plan_path);

}  // namespace tpp::planner
