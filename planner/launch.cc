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
  const bool multi_node = per_replica > c.host_gpus();
  const std::int64_t nodes = (per_replica + c.host_gpus() - 1) / c.host_gpus();
  // One server holds every replica when they all fit in one node (vLLM's and SGLang's own
  // data parallelism, with their internal load balancer), and always with expert parallelism,
  // whose experts span the replicas. Otherwise each replica is a server of its own, behind a
  // load balancer.
  const bool one_server = p.dp == 1 || p.expert_parallel || p.gpus() <= c.host_gpus();
  const std::int64_t dp = one_server ? p.dp : 1;
  Launch l;
  l.servers = one_server ? 1 : p.dp;
  l.gpus_per_server = one_server ? p.gpus() : per_replica;
  l.hosts_per_server = (l.gpus_per_server + c.host_gpus() - 1) / c.host_gpus();
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
  l.vllm_serve = serve;
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
        nodes, c.host_gpus(),
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
  // For a vLLM plan, SGLang's flags with vLLM's figures (the same share of memory, batch and
  // chunk); for an SGLang plan, the values it was simulated with.
  const bool sglang = o.framework == sim::Framework::kSglang;
  sg += sglang ? fmt::format(" --mem-fraction-static {:.3f}", o.memory_fraction)
                : fmt::format(" --mem-fraction-static {:.2f}", o.gpu_memory_utilization);
  sg += fmt::format(" --context-length {} --max-running-requests {} --chunked-prefill-size {}",
                    o.max_model_len, o.max_num_seqs, o.max_num_batched_tokens);
  if (sglang && o.block_size != 1) sg += fmt::format(" --page-size {}", o.block_size);
  // SGLang's --kv-cache-dtype names (server_args.py): fp8_e4m3, fp8_e5m2, bfloat16, fp4_e2m1.
  switch (o.kv_cache_dtype) {
    case model::KvCacheDType::kAuto:
    case model::KvCacheDType::kF16: break;  // (no float16 choice: the model's dtype, auto)
    case model::KvCacheDType::kBF16: sg += " --kv-cache-dtype bfloat16"; break;
    case model::KvCacheDType::kFP8:
    case model::KvCacheDType::kFP8E4M3: sg += " --kv-cache-dtype fp8_e4m3"; break;
    case model::KvCacheDType::kFP8E5M2: sg += " --kv-cache-dtype fp8_e5m2"; break;
    case model::KvCacheDType::kNvfp4: sg += " --kv-cache-dtype fp4_e2m1"; break;
  }
  l.sglang_serve = sg;
  if (multi_node)
    sg += fmt::format(" --nnodes {} --node-rank <0..{}> --dist-init-addr <head-node-ip>:5000",
                      nodes, nodes - 1);
  l.sglang = replicas + sg;
  // trtllm-serve (tensorrt_llm/commands/serve.py flags); the KV dtype goes in an extra options
  // file (kv_cache_config.dtype). Across hosts it runs one MPI rank a GPU under
  // trtllm-llmapi-launch (TensorRT-LLM's trtllm-serve docs, multi-node).
  const bool trtllm = o.framework == sim::Framework::kTrtllm;
  std::string tr = fmt::format("trtllm-serve {} --tp_size {} --pp_size {}", model_ref(m), p.tp, p.pp);
  if (p.expert_parallel) tr += fmt::format(" --ep_size {}", p.ep());
  tr += fmt::format(" --max_batch_size {} --max_num_tokens {} --max_seq_len {} "
                    "--kv_cache_free_gpu_memory_fraction {:.2f}",
                    o.max_num_seqs, o.max_num_batched_tokens, o.max_model_len,
                    trtllm ? o.memory_fraction : 0.9);
  // kv_cache_config.dtype takes auto, fp8 or nvfp4 (tensorrt_llm/llmapi/llm_args.py
  // KvCacheConfig; nvfp4: TensorRT-LLM's quantization docs, NVFP4 KV cache).
  std::string tr_pre;
  const bool fp4_kv = o.kv_cache_dtype == model::KvCacheDType::kNvfp4;
  const auto kv = o.kv_cache_dtype;
  if (fp4_kv || kv == model::KvCacheDType::kFP8 || kv == model::KvCacheDType::kFP8E4M3 ||
      kv == model::KvCacheDType::kFP8E5M2) {
    tr_pre = fmt::format("printf 'kv_cache_config:\\n  dtype: {}\\n' > extra-llm-api-config.yml\n",
                         fp4_kv ? "nvfp4" : "fp8");
    tr += " --config extra-llm-api-config.yml";
  }
  l.trtllm_serve = tr;
  if (!tr_pre.empty()) l.trtllm_setup = tr_pre.substr(0, tr_pre.size() - 1);
  if (multi_node)
    tr = fmt::format("mpirun -np {} --hostfile <{} hosts, {} slots each> trtllm-llmapi-launch {}",
                     per_replica, nodes, c.host_gpus(), tr);
  l.trtllm = replicas + tr_pre + tr;
  return l;
}

const char* engine_title(sim::Framework f) {
  return f == sim::Framework::kSglang ? "SGLang" : f == sim::Framework::kTrtllm ? "TensorRT-LLM" : "vLLM";
}

}  // namespace tpp::planner
