// Deployment files beside a plan (tpp-plan -o): the Kubernetes manifest parsed as YAML and held
// to the shape the API server and LeaderWorkerSet's CRD require, and the Slurm script run dry,
// with srun, scontrol, sleep and the engines replaced by stubs that log how they were called.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>

#include "cli_util.h"

namespace tpp {
namespace {

namespace fs = std::filesystem;

struct Planned {
  fs::path dir;
  std::vector<YAML::Node> docs;
  std::string sbatch;
};

Planned plan(const std::string& args, const std::string& stem) {
  auto r = test::tpp_plan(args + " -o " + stem + ".json");
  EXPECT_EQ(r.code, 0) << r.err;
  Planned p;
  p.dir = fs::path(test::write_temp("x", "")).parent_path();
  EXPECT_TRUE(fs::exists(p.dir / (stem + ".json")));
  p.docs = YAML::LoadAllFromFile((p.dir / (stem + ".k8s.yaml")).string());
  p.sbatch = test::slurp(p.dir / (stem + ".sbatch"));
  return p;
}

// The fields every object needs, and a pod spec's containers with their GPUs and commands.
void expect_pod_spec(const YAML::Node& spec, const char* gpu_key, const std::string& gpus,
                     const std::string& in_command) {
  ASSERT_TRUE(spec["containers"].IsSequence());
  const YAML::Node c = spec["containers"][0];
  EXPECT_TRUE(c["name"] && c["image"]);
  ASSERT_TRUE(c["command"].IsSequence());
  EXPECT_EQ(c["command"][0].as<std::string>(), "sh");
  EXPECT_NE(c["command"][2].as<std::string>().find(in_command), std::string::npos)
      << c["command"][2].as<std::string>();
  EXPECT_EQ(c["resources"]["limits"][gpu_key].as<std::string>(), gpus);
  EXPECT_EQ(c["volumeMounts"][0]["name"].as<std::string>(), spec["volumes"][0]["name"].as<std::string>());
}

TEST(Deploy, MultiHostVllmIsALeaderWorkerSet) {
  const Planned p = plan("--model r1 --cluster a100x16", "r1");  // TP8 x PP2 x DP4
  ASSERT_EQ(p.docs.size(), 2u);
  const YAML::Node lws = p.docs[0];
  EXPECT_EQ(lws["apiVersion"].as<std::string>(), "leaderworkerset.x-k8s.io/v1");
  EXPECT_EQ(lws["kind"].as<std::string>(), "LeaderWorkerSet");
  EXPECT_EQ(lws["spec"]["replicas"].as<int>(), 4);
  const YAML::Node t = lws["spec"]["leaderWorkerTemplate"];
  EXPECT_EQ(t["size"].as<int>(), 2);
  expect_pod_spec(t["leaderTemplate"]["spec"], "nvidia.com/gpu", "8",
                  "vllm serve deepseek-ai/DeepSeek-R1 --tensor-parallel-size 8 --pipeline-parallel-size 2");
  expect_pod_spec(t["workerTemplate"]["spec"], "nvidia.com/gpu", "8", "--address=$(LWS_LEADER_ADDRESS):6379");
  EXPECT_EQ(p.docs[1]["kind"].as<std::string>(), "Service");
  EXPECT_EQ(p.docs[1]["spec"]["selector"]["role"].as<std::string>(), "leader");
  EXPECT_NE(p.sbatch.find("#SBATCH --nodes=2\n"), std::string::npos);
  EXPECT_NE(p.sbatch.find("#SBATCH --array=0-3\n"), std::string::npos);
}

TEST(Deploy, OneHostIsADeploymentOnAmdGpus) {
  const Planned p = plan("--model llama-3.1-70b --cluster mi300x1 --tp 4 --dp 2", "l");
  ASSERT_EQ(p.docs.size(), 2u);
  const YAML::Node d = p.docs[0];
  EXPECT_EQ(d["apiVersion"].as<std::string>(), "apps/v1");
  EXPECT_EQ(d["kind"].as<std::string>(), "Deployment");
  EXPECT_EQ(d["spec"]["replicas"].as<int>(), 1);  // one vLLM server holds both replicas
  EXPECT_EQ(d["spec"]["selector"]["matchLabels"]["app"].as<std::string>(),
            d["spec"]["template"]["metadata"]["labels"]["app"].as<std::string>());
  expect_pod_spec(d["spec"]["template"]["spec"], "amd.com/gpu", "8", "--data-parallel-size 2");
  EXPECT_NE(p.sbatch.find("#SBATCH --gpus-per-node=8\n"), std::string::npos);
}

// Runs `script` with stubs first on PATH; returns what they logged.
std::string dry_run(const fs::path& dir, const std::string& script) {
  const fs::path bin = dir / "stubs";
  fs::create_directories(bin);
  auto stub = [&](const std::string& name, const std::string& body) {
    std::ofstream(bin / name) << "#!/bin/bash\n" << body;
    fs::permissions(bin / name, fs::perms::owner_all);
  };
  stub("scontrol", "printf 'node1\\nnode2\\n'\n");
  stub("sleep", "exit 0\n");
  // srun: log; run "sh -c CMD" once a node, as each node's task would, with its SLURM_NODEID.
  stub("srun", "echo \"srun $*\" >> \"$LOG\"\nnodes=1\nfor a in \"$@\"; do case $a in --nodes=*) "
               "nodes=${a#--nodes=};; esac; done\nwhile [ $# -gt 0 ] && [ \"$1\" != sh ]; do shift; "
               "done\n[ $# -ge 3 ] || exit 0\nfor ((i=0;i<nodes;i++)); do SLURM_NODEID=$i sh -c \"$3\"; done\n");
  for (const char* e : {"vllm", "python3", "ray", "trtllm-llmapi-launch", "trtllm-serve"})
    stub(e, std::string("echo \"") + e + " $*\" >> \"$LOG\"\n");
  const fs::path log = dir / "dry-run.log";
  fs::remove(log);
  const std::string cmd = "cd '" + dir.string() + "' && bash -n '" + script + "' && PATH='" +
                          bin.string() + "':$PATH LOG='" + log.string() +
                          "' SLURM_JOB_NODELIST=node[1-2] bash '" + script + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return test::slurp(log);
}

TEST(Deploy, SlurmScriptsRunDry) {
  Planned v = plan("--model r1 --cluster a100x16 --tp 8 --pp 2", "v");
  std::string log = dry_run(v.dir, "v.sbatch");
  EXPECT_NE(log.find("ray start --head --port=6379 --block"), std::string::npos) << log;
  EXPECT_NE(log.find("ray start --address=node1:6379 --block"), std::string::npos) << log;
  EXPECT_NE(log.find("vllm serve deepseek-ai/DeepSeek-R1 --tensor-parallel-size 8 --pipeline-parallel-size 2"),
            std::string::npos) << log;
  EXPECT_NE(log.find("--distributed-executor-backend ray"), std::string::npos) << log;
  // SGLang: each node's task its own rank, every one pointed at the first node.
  Planned s = plan("--model r1 --cluster a100x16 --tp 8 --pp 2 --engine sglang", "s");
  log = dry_run(s.dir, "s.sbatch");
  EXPECT_NE(log.find("--nnodes 2 --node-rank 0 --dist-init-addr node1:5000"), std::string::npos) << log;
  EXPECT_NE(log.find("--nnodes 2 --node-rank 1 --dist-init-addr node1:5000"), std::string::npos) << log;
  // TensorRT-LLM: one MPI rank a GPU over both nodes.
  Planned t = plan("--model r1 --cluster a100x16 --tp 8 --pp 2 --engine trtllm", "t");
  EXPECT_NE(t.sbatch.find("#SBATCH --ntasks-per-node=8\n"), std::string::npos) << t.sbatch;
  log = dry_run(t.dir, "t.sbatch");
  EXPECT_NE(log.find("srun --nodes=2 --ntasks=16 --mpi=pmix sh -c"), std::string::npos) << log;
  EXPECT_NE(log.find("trtllm-llmapi-launch trtllm-serve deepseek-ai/DeepSeek-R1 --tp_size 8 --pp_size 2"),
            std::string::npos) << log;
  // An fp8 KV cache: every host writes the options file first, then launches under MPI.
  Planned f = plan("--model r1 --cluster a100x16 --tp 8 --pp 2 --engine trtllm --kv-cache-dtype fp8", "f");
  log = dry_run(f.dir, "f.sbatch");
  EXPECT_NE(log.find("trtllm-llmapi-launch trtllm-serve deepseek-ai/DeepSeek-R1"), std::string::npos) << log;
  EXPECT_NE(log.find("--config extra-llm-api-config.yml"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(f.dir / "extra-llm-api-config.yml"));
  const YAML::Node w = f.docs[0]["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0];
  EXPECT_EQ(w["command"][2].as<std::string>().rfind("printf 'kv_cache_config:", 0), 0u) << w["command"][2];
}

}  // namespace
}  // namespace tpp
