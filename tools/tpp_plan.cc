// tpp-plan: reads a model and a cluster and prints what it knows of them (later: the ranked
// TP/PP/DP plans). Exit codes: 0 success, 2 bad input or bad flags (one line on stderr).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "common/data_path.h"
#include "hardware_profiles/hardware.h"
#include "model/load.h"
#include "planner/summary.h"

namespace {

constexpr int kExitBadInput = 2;

int fail(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  return kExitBadInput;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tpp-plan: which TP/PP split to run a model with on a cluster, and what it gives",
               "tpp-plan"};
  std::string model_arg, cluster_arg, format = "text";
  app.add_option("--model", model_arg,
                 "model: tpp YAML, a Hugging Face config.json (or its directory), or a catalog "
                 "name such as r1")
      ->required();
  app.add_option("--cluster", cluster_arg, "cluster YAML, or a catalog name such as a100x16")
      ->required();
  app.add_option("--format", format, "output format")->check(CLI::IsMember({"text", "json"}));
  app.set_version_flag("--version", std::string("tpp-plan ") + TPP_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(std::string("tpp-plan: error: ") + e.what() + " (see --help)");
  }

  auto model_path = tpp::resolve_input(model_arg, tpp::Catalog::kModels);
  if (!model_path) return fail(model_path.error().str());
  auto model = tpp::model::load_model(*model_path);
  if (!model) return fail(model.error().str());
  auto cluster = tpp::hw::load_cluster(cluster_arg);
  if (!cluster) return fail(cluster.error().str());

  if (format == "json") {
    nlohmann::json j;
    j["tpp_version"] = TPP_VERSION;
    j["model"] = tpp::planner::model_json(*model);
    j["cluster"] = tpp::planner::cluster_json(*cluster);
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << tpp::planner::model_text(*model) << "\n" << tpp::planner::cluster_text(*cluster);
  }
  return 0;
}
