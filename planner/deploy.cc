#include "planner/deploy.h"

#include <cctype>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "planner/launch.h"

namespace tpp::planner {
namespace {

// A YAML scalar that holds any text: a JSON string is a YAML double-quoted scalar.
std::string yq(const std::string& s) { return nlohmann::json(s).dump(); }

// A Kubernetes object name (RFC 1123 label): lowercase letters, digits and '-', at most 63.
std::string k8s_name(const std::string& model) {
  std::string n;
  for (char ch : model) {
    const auto c = static_cast<unsigned char>(ch);
    n += std::isalnum(c) ? static_cast<char>(std::tolower(c)) : '-';
  }
  std::string out;
  for (char ch : n)
    if (!(ch == '-' && (out.empty() || out.back() == '-'))) out += ch;
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.size() > 40) out.resize(40);
  while (!out.empty() && out.back() == '-') out.pop_back();
  return "tpp-" + (out.empty() ? std::string("model") : out);
}

struct Engine {
  const char* image;  // the engine's published serving image; pin the version you validated
  std::string serve;  // one server's command, without multi-host flags
  std::string setup = "";  // "... && ": what every host runs first (TensorRT-LLM's options file)
};

Engine engine_of(const Launch& l, sim::Framework f, bool amd) {
  switch (f) {
    case sim::Framework::kSglang:
      return {amd ? "lmsysorg/sglang:latest-rocm" : "lmsysorg/sglang:latest",
              l.sglang_serve + " --host 0.0.0.0 --port 8000"};
    case sim::Framework::kTrtllm:
      return {"nvcr.io/nvidia/tensorrt-llm/release:latest", l.trtllm_serve + " --host 0.0.0.0 --port 8000",
              l.trtllm_setup.empty() ? "" : l.trtllm_setup + " && "};
    case sim::Framework::kVllm:
      break;
  }
  return {amd ? "rocm/vllm:latest" : "vllm/vllm-openai:latest", l.vllm_serve + " --host 0.0.0.0 --port 8000"};
}

// A container's lines, indented by `in` spaces (the list item's "- name:" at in - 2).
std::string container(const std::string& name, const std::string& image, const std::string& cmd,
                      const char* gpu_resource, std::int64_t gpus, bool port, int in) {
  const std::string p(static_cast<std::size_t>(in), ' ');
  std::string s = fmt::format("{0}- name: {1}\n{2}image: {3}\n{2}command: [\"sh\", \"-c\", {4}]\n", p.substr(0, p.size() - 2), name, p, image, yq(cmd));
  s += fmt::format("{0}env:\n{0}- name: HF_TOKEN\n{0}  valueFrom: {{secretKeyRef: {{name: hf-token, key: token, optional: true}}}}\n", p);
  s += fmt::format("{0}resources:\n{0}  limits:\n{0}    {1}: \"{2}\"\n", p, gpu_resource, gpus);
  if (port)
    s += fmt::format("{0}ports:\n{0}- containerPort: 8000\n{0}readinessProbe:\n{0}  httpGet: {{path: /health, port: 8000}}\n"
                     "{0}  initialDelaySeconds: 120\n{0}  periodSeconds: 10\n", p);
  s += fmt::format("{0}volumeMounts:\n{0}- {{name: dshm, mountPath: /dev/shm}}\n", p);
  return s;
}

// `s` in bash's double quotes: \\ " ` $ escaped, so that a variable is the inner shell's (srun's
// task) unless named in `outer`, which the batch script itself expands.
std::string bash_dq(const std::string& s, const std::string& outer = "") {
  std::string q = "\"";
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char ch = s[i];
    if (ch == '$' && !outer.empty() && s.compare(i + 1, outer.size(), outer) == 0) {
      q += ch;
      continue;
    }
    if (ch == '\\' || ch == '"' || ch == '`' || ch == '$') q += '\\';
    q += ch;
  }
  return q + "\"";
}

std::string shm_volume(int in) {
  const std::string p(static_cast<std::size_t>(in), ' ');
  return fmt::format("{0}volumes:\n{0}- name: dshm\n{0}  emptyDir: {{medium: Memory, sizeLimit: 16Gi}}\n", p);
}

}  // namespace

std::string kubernetes_path(const std::string& plan_path) {
  std::string stem = plan_path;
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".json") == 0) stem.resize(stem.size() - 5);
  return stem + ".k8s.yaml";
}

std::string slurm_path(const std::string& plan_path) {
  std::string stem = plan_path;
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".json") == 0) stem.resize(stem.size() - 5);
  return stem + ".sbatch";
}

DeploymentFiles deployment_files(const model::Model& m, const hw::Cluster& c, const sim::MemoryPlan& plan) {
  const Launch l = launch_commands(m, c, plan);
  const sim::Framework f = plan.options.framework;
  const bool amd = c.gpu.vendor == hw::Vendor::kAmd;
  const Engine e = engine_of(l, f, amd);
  const char* gpu_res = amd ? "amd.com/gpu" : "nvidia.com/gpu";
  const std::string name = k8s_name(m.name);
  const std::int64_t hosts = l.hosts_per_server, per_host = std::min(l.gpus_per_server, c.host_gpus());
  const std::string title = std::string(engine_title(f));
  DeploymentFiles d;
  // A server whose GPUs do not fill its hosts: the engines start every GPU of each host.
  const std::string uneven =
      hosts > 1 && l.gpus_per_server % c.host_gpus() != 0
          ? fmt::format("# Warning: a server's {} GPUs do not fill its {} hosts of {}; vLLM and SGLang "
                        "start every GPU of a host: choose TP x PP a multiple of {} for a multi-host server.\n",
                        l.gpus_per_server, hosts, c.host_gpus(), c.host_gpus())
          : "";

  // ---- Kubernetes -------------------------------------------------------------------------
  std::string k = fmt::format(
      "# {} serving {} as tpp-plan planned it: TP{} x PP{} x DP{} on {} GPU{} of {}.\n"
      "# {} server{} of {} GPU{} on {} host{} each. Pin the image to the version you validated.\n",
      title, m.name, plan.parallel.tp, plan.parallel.pp, plan.parallel.dp, plan.parallel.gpus(),
      plan.parallel.gpus() == 1 ? "" : "s", c.name, l.servers, l.servers == 1 ? "" : "s",
      l.gpus_per_server, l.gpus_per_server == 1 ? "" : "s", hosts, hosts == 1 ? "" : "s");
  k += uneven;
  if (hosts == 1) {
    k += fmt::format("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {0}\n  labels: {{app: {0}}}\n"
                     "spec:\n  replicas: {1}\n  selector:\n    matchLabels: {{app: {0}}}\n  template:\n"
                     "    metadata:\n      labels: {{app: {0}}}\n    spec:\n      containers:\n",
                     name, l.servers);
    k += container("server", e.image, e.setup + e.serve, gpu_res, per_host, true, 8);
    k += shm_volume(6);
    k += fmt::format("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {0}\nspec:\n  selector: {{app: {0}}}\n"
                     "  ports:\n  - {{port: 8000, targetPort: 8000}}\n", name);
  } else {
    std::string leader, worker;
    switch (f) {
      case sim::Framework::kVllm:
        // kubernetes-sigs/lws docs/examples/vllm: Ray's head on the leader, the workers join it.
        leader = "ray start --head --port=6379 && " + e.serve + " --distributed-executor-backend ray";
        worker = "ray start --address=$(LWS_LEADER_ADDRESS):6379 --block";
        break;
      case sim::Framework::kSglang:
        leader = fmt::format("{} --nnodes {} --node-rank 0 --dist-init-addr $(LWS_LEADER_ADDRESS):5000", e.serve, hosts);
        worker = fmt::format("{} --nnodes {} --node-rank $(LWS_WORKER_INDEX) --dist-init-addr $(LWS_LEADER_ADDRESS):5000",
                             e.serve, hosts);
        break;
      case sim::Framework::kTrtllm:
        // One MPI rank a GPU over the group's pods (LWS names them <leader>-<index> in the
        // leader's subdomain); the workers run sshd for mpirun (the image must carry it).
        leader = fmt::format(
            "{4}L=$(LWS_LEADER_ADDRESS); H=\"$L:{0}\"; for i in $(seq 1 {1}); do H=\"$H,${{L%%.*}}-$i.${{L#*.}}:{0}\"; done; "
            "mpirun --allow-run-as-root -np {2} -H \"$H\" trtllm-llmapi-launch {3}",
            per_host, hosts - 1, l.gpus_per_server, e.serve, e.setup);
        worker = e.setup + "/usr/sbin/sshd -D";
        break;
    }
    k += fmt::format("apiVersion: leaderworkerset.x-k8s.io/v1\nkind: LeaderWorkerSet\nmetadata:\n  name: {0}\n"
                     "spec:\n  replicas: {1}\n  leaderWorkerTemplate:\n    size: {2}\n"
                     "    restartPolicy: RecreateGroupOnPodRestart\n    leaderTemplate:\n"
                     "      metadata:\n        labels: {{role: leader}}\n      spec:\n        containers:\n",
                     name, l.servers, hosts);
    k += container("leader", e.image, leader, gpu_res, per_host, true, 10);
    k += shm_volume(8);
    k += "    workerTemplate:\n      spec:\n        containers:\n";
    k += container("worker", e.image, worker, gpu_res, per_host, false, 10);
    k += shm_volume(8);
    k += fmt::format("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {0}-leader\nspec:\n"
                     "  selector: {{leaderworkerset.sigs.k8s.io/name: {0}, role: leader}}\n"
                     "  ports:\n  - {{port: 8000, targetPort: 8000}}\n", name);
  }
  d.kubernetes = k;

  // ---- Slurm -----------------------------------------------------------------------------
  const bool trtllm_mpi = f == sim::Framework::kTrtllm && hosts > 1;
  std::string s = fmt::format(
      "#!/bin/bash\n# {} serving {} as tpp-plan planned it: TP{} x PP{} x DP{} on {}.\n"
      "# One job a server{}; submit with: sbatch {}\n"
      "#SBATCH --job-name={}\n#SBATCH --nodes={}\n#SBATCH --ntasks-per-node={}\n#SBATCH --gpus-per-node={}\n"
      "#SBATCH --exclusive\n",
      title, m.name, plan.parallel.tp, plan.parallel.pp, plan.parallel.dp, c.name,
      l.servers > 1 ? fmt::format(" (an array of {}: put a load balancer in front)", l.servers) : "",
      "<this file>", name, hosts, trtllm_mpi ? per_host : 1, per_host);
  if (l.servers > 1) s += fmt::format("#SBATCH --array=0-{}\n", l.servers - 1);
  s += uneven;
  s += "set -euo pipefail\n";
  if (hosts == 1) {
    s += "srun --nodes=1 --ntasks=1 sh -c " + bash_dq(e.setup + e.serve) + "\n";
  } else {
    s += "nodes=($(scontrol show hostnames \"$SLURM_JOB_NODELIST\"))\nhead=${nodes[0]}\n";
    switch (f) {
      case sim::Framework::kVllm:
        // vLLM's docs (parallelism_scaling.md): a Ray cluster over the nodes, then vllm serve
        // on the head with the Ray executor.
        s += "srun --nodes=1 --ntasks=1 -w \"$head\" ray start --head --port=6379 --block &\nsleep 10\n";
        s += fmt::format("srun --nodes={0} --ntasks={0} --exclude=\"$head\" ray start --address=\"$head:6379\" --block &\nsleep 30\n",
                         hosts - 1);
        s += "srun --overlap --nodes=1 --ntasks=1 -w \"$head\" sh -c " +
             bash_dq(e.serve + " --distributed-executor-backend ray") + "\n";
        break;
      case sim::Framework::kSglang:
        // Each task's rank is its node's (SLURM_NODEID, the task's); the head's name the script's.
        s += fmt::format("srun --nodes={0} --ntasks-per-node=1 sh -c {1}\n", hosts,
                         bash_dq(e.serve + fmt::format(" --nnodes {} --node-rank $SLURM_NODEID "
                                                       "--dist-init-addr $head:5000", hosts),
                                 "head"));
        break;
      case sim::Framework::kTrtllm:
        // TensorRT-LLM's trtllm-serve docs, multi-node: one rank a GPU under srun --mpi=pmix.
        // One rank a GPU of the server (TP x PP of them), however they fall on the hosts.
        s += fmt::format("srun --nodes={} --ntasks={} --mpi=pmix sh -c {}\n", hosts, l.gpus_per_server,
                         bash_dq(e.setup + "trtllm-llmapi-launch " + e.serve));
        break;
    }
  }
  d.slurm = s;
  return d;
}

}  // namespace tpp::planner
