#include "planner/launch.h"

#include <fmt/format.h>

namespace tpp::planner {

std::string shell_quote(const std::string& s) {
  const bool plain = !s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                       "0123456789_-./:@+=,%") == std::string::npos;
  if (plain) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

namespace {

// The model as one shell word: the name comes from a file the user gave, so it is quoted
// whenever it holds anything but the characters of a repository name.
std::string model_ref(const model::Model& m) {
  return shell_quote(m.hf_repo.empty() ? m.name : m.hf_repo);
}

}  // namespace

Launch launch_commands(const model::Model& m, const hw::Cluster& c, const sim::MemoryPlan& plan) {
  const sim::ParallelConfig& p = plan.parallel;
  const sim::ResolvedOptions& o = plan.options;
  const std::int64_t per_replica = p.tp * p.pp;
  const bool multi_node = per_replica > c.gpus_per_node;
  const std::int64_t nodes = (per_replica + c.gpus_per_node - 1) / c.gpus_per_node;
  // One server holds every replica when they all fit in one node (vLLM's and SGLang's own
  // data parallelism, with their internal load balancer), and always with expert parallelism,
  // whose experts span the replicas. Otherwise each replica is a server of its own, behind a
  // load balancer.
  const bool one_server = p.dp == 1 || p.expert_parallel || p.gpus() <= c.gpus_per_node;
  const std::int64_t dp = one_server ? p.dp : 1;
  Launch l;
  std::string serve = fmt::format(
      "vllm serve {} --tensor-parallel-size {} --pipeline-parallel-size {}", model_ref(m), p.tp,
      p.pp);
  if (dp > 1) serve += fmt::format(" --data-parallel-size {}", dp);
  if (p.expert_parallel) serve += " --enable-expert-parallel";
  serve += fmt::format(" --gpu-memory-utilization {:.2f} --max-model-len {} --max-num-seqs {} "
                       "--max-num-batched-tokens {}",
                       o.gpu_memory_utilization, o.max_model_len, o.max_num_seqs,
                       o.max_num_batched_tokens);
  // A model with linear-attention layers: vLLM derives its block size from the mamba state
  // (what the plan shows); it is not one the flag accepts.
  if (!m.linear_attention) serve += fmt::format(" --block-size {}", o.block_size);
  if (o.kv_cache_dtype != model::KvCacheDType::kAuto)
    serve += fmt::format(" --kv-cache-dtype {}", model::kv_cache_dtype_name(o.kv_cache_dtype));
  if (o.enforce_eager) serve += " --enforce-eager";
  if (o.dtype != m.dtype)  // vLLM's --dtype names
    serve += fmt::format(" --dtype {}", o.dtype == model::DType::kF32   ? "float32"
                                        : o.dtype == model::DType::kF16 ? "float16"
                                                                        : "bfloat16");
  if (!p.pp_layer_partition.empty()) {
    std::string parts;
    for (auto n : p.pp_layer_partition) parts += (parts.empty() ? "" : ",") + std::to_string(n);
    serve = "VLLM_PP_LAYER_PARTITION=" + parts + " " + serve;
  }
  std::string replicas;
  if (!one_server)
    replicas = fmt::format("# {} replicas, each its own server on {} GPU{}{}; put a load balancer "
                           "in front of them\n",
                           p.dp, per_replica, per_replica == 1 ? "" : "s",
                           multi_node ? fmt::format(" ({} nodes)", nodes) : "");
  if (multi_node) {
    // vLLM's docs/serving/parallelism_scaling.md, "Running vLLM on a Ray cluster": a Ray
    // cluster over the replica's nodes, then vllm serve on its head node with the Ray executor.
    l.vllm = replicas + fmt::format(
        "# each replica spans {} nodes of {} GPUs: start a Ray cluster over them\n"
        "ray start --head --port=6379                      # on the head node\n"
        "ray start --address=<head-node-ip>:6379           # on {}\n"
        "{} --distributed-executor-backend ray        # on the head node",
        nodes, c.gpus_per_node,
        nodes == 2 ? std::string("the other node") : fmt::format("each of the other {} nodes", nodes - 1),
        serve);
    if (one_server && p.dp > 1)
      l.vllm += "\n# data parallelism across nodes: see vLLM's data_parallel_deployment guide "
                "(--data-parallel-size-local, --data-parallel-address)";
  } else {
    l.vllm = replicas + serve;
  }
  std::string sg = fmt::format(
      "python3 -m sglang.launch_server --model-path {} --tp-size {} --pp-size {}", model_ref(m),
      p.tp, p.pp);
  if (dp > 1) sg += fmt::format(" --dp-size {}", dp);
  if (p.expert_parallel) sg += fmt::format(" --ep-size {}", p.ep());
  sg += fmt::format(" --mem-fraction-static {:.2f} --context-length {} --max-running-requests {} "
                    "--chunked-prefill-size {}",
                    o.gpu_memory_utilization, o.max_model_len, o.max_num_seqs,
                    o.max_num_batched_tokens);
  if (model::kv_cache_dtype_name(o.kv_cache_dtype) != std::string("auto"))
    sg += " --kv-cache-dtype fp8_e4m3";
  if (multi_node)
    sg += fmt::format(" --nnodes {} --node-rank <0..{}> --dist-init-addr <head-node-ip>:5000",
                      nodes, nodes - 1);
  l.sglang = replicas + sg;
  return l;
}

}  // namespace tpp::planner
