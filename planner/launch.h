// The commands that deploy a plan: `vllm serve` with the split and the serving options (and, for
// a plan that spans nodes, the Ray steps vLLM documents for multi-node serving), and SGLang's
// equivalent `sglang.launch_server` flags.
#pragma once

#include <string>

#include "hardware_profiles/hardware.h"
#include "model/model.h"
#include "simulator/memory.h"

namespace tpp::planner {

struct Launch {
  std::string vllm;    // one command, or the Ray steps then the command, one per line
  std::string sglang;
  std::string trtllm;  // trtllm-serve (multi-node: under mpirun with trtllm-llmapi-launch)
  // What deployment files are made of (planner/deploy.h): each engine's command for one
  // server, without the multi-host steps (a shell command line; TensorRT-LLM's may first write
  // its extra options file); the hosts one server spans, the servers, their GPUs.
  std::string vllm_serve, sglang_serve, trtllm_serve;
  std::string trtllm_setup;  // run first on every host (its extra options file), or empty
  std::int64_t hosts_per_server = 1, servers = 1, gpus_per_server = 1;
  // The plan's own engine's command, and that engine's name as people write it.
  std::string primary(sim::Framework f) const {
    return f == sim::Framework::kSglang ? sglang : f == sim::Framework::kTrtllm ? trtllm : vllm;
  }
};
const char* engine_title(sim::Framework f);  // "vLLM", "SGLang", "TensorRT-LLM"

// `s` as one word of a POSIX shell: unchanged when it holds only [A-Za-z0-9_-./:@+=,%], else in
// single quotes with each ' written '\''.
std::string shell_quote(const std::string& s);

Launch launch_commands(const model::Model& m, const hw::Cluster& c, const sim::MemoryPlan& p);

}  // namespace tpp::planner
