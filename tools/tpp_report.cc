// tpp-report: a plan and the runs that measured it, as a report a user opens.
//
//   tpp-report --plan plan.json [--measured measured.json ...] [--vllm-bench result.json ...]
//              [--vllm-log server.log ...] -o DIR [--fail-above PCT]
//
// writes DIR/report.md, DIR/report.html (self-contained), DIR/memory.svg (gnuplot) and
// DIR/placement.svg (Graphviz), and prints the verdict. Exit 0; 1 when --fail-above is given and
// a component missed it; 2 on bad input (one line naming the file and the field).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/file.h"
#include "reports/report.h"
#include "reports/vllm.h"

namespace {

constexpr int kExitBadInput = 2;

// The JSON in `path`, or an error naming the file and the line and column of the syntax error.
tpp::Expected<nlohmann::json> read_json(const std::string& path, const char* what) {
  auto text = tpp::read_text_file(path, what, std::size_t{1} << 30);
  if (!text) return text.error();
  try {
    return nlohmann::json::parse(*text);
  } catch (const nlohmann::json::parse_error& e) {
    int line = 1, col = 1;
    for (std::size_t k = 0; k + 1 < e.byte && k < text->size(); ++k) {
      if ((*text)[k] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    std::string msg = e.what();
    const auto at = msg.find("syntax error");
    return tpp::make_error(path, line, col,
                           std::string("not valid JSON (") + what + "): " +
                               (at == std::string::npos ? msg : msg.substr(at)));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tpp-report: a plan (tpp-plan -o plan.json) and the runs that measured it "
               "(tpp-run -o measured.json) as report.md and a self-contained report.html, with the "
               "prediction beside each measurement, a chart of each GPU's memory and the placement "
               "diagram"};
  std::string plan_file, out_dir;
  std::vector<std::string> measured_files, bench_files, log_files;
  double fail_above = -1;
  app.add_option("--plan", plan_file, "the plan (tpp-plan -o plan.json)")->required();
  app.add_option("--measured", measured_files,
                 "a run of the plan (tpp-run -o measured.json); several for a sweep");
  app.add_option("--vllm-bench", bench_files,
                 "a vllm bench serve --save-result JSON (or benchmarks/benchmark_serving.py's): its "
                 "load re-simulated on the plan beside what it measured; several for a sweep");
  app.add_option("--vllm-log", log_files,
                 "a vLLM server log: its weights, KV cache, blocks, concurrency and CUDA-graph "
                 "figures beside the plan's memory prediction");
  app.add_option("-o,--output", out_dir, "the directory to write the report into")->required();
  app.add_option("--fail-above", fail_above,
                 "exit 1 when any component's |error| exceeds this many percent (for CI)")
      ->check(CLI::Range(0.0, 1e9));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tpp-report: error: %s (see --help)\n", e.what());
    return kExitBadInput;
  }
  auto plan = read_json(plan_file, "plan");
  if (!plan) {
    std::fprintf(stderr, "%s\n", plan.error().str().c_str());
    return kExitBadInput;
  }
  std::vector<nlohmann::json> measured;
  for (const auto& f : measured_files) {
    auto m = read_json(f, "measured run");
    if (!m) {
      std::fprintf(stderr, "%s\n", m.error().str().c_str());
      return kExitBadInput;
    }
    measured.push_back(std::move(*m));
  }
  std::vector<tpp::reports::RunComparison> vllm;
  std::vector<std::string> notes;
  for (const auto& f : bench_files) {
    auto b = read_json(f, "vllm bench result");
    if (!b) {
      std::fprintf(stderr, "%s\n", b.error().str().c_str());
      return kExitBadInput;
    }
    auto c = tpp::reports::compare_vllm_bench(plan_file, *b, f, &notes);
    if (!c) {
      std::fprintf(stderr, "%s\n", c.error().str().c_str());
      return kExitBadInput;
    }
    vllm.push_back(std::move(*c));
  }
  for (const auto& f : log_files) {
    auto text = tpp::read_text_file(f, "vLLM log", std::size_t{1} << 30);
    if (!text) {
      std::fprintf(stderr, "%s\n", text.error().str().c_str());
      return kExitBadInput;
    }
    auto log = tpp::reports::parse_vllm_log(*text, f);
    if (!log) {
      std::fprintf(stderr, "%s\n", log.error().str().c_str());
      return kExitBadInput;
    }
    auto c = tpp::reports::compare_vllm_log(*plan, plan_file, *log, f);
    if (!c) {
      std::fprintf(stderr, "%s\n", c.error().str().c_str());
      return kExitBadInput;
    }
    vllm.push_back(std::move(*c));
  }
  tpp::reports::ReportOptions o;
  o.out_dir = out_dir;
  o.fail_above_pct = fail_above;
  auto r = tpp::reports::write_report(*plan, plan_file, measured, measured_files, o, vllm, notes);
  if (!r) {
    std::fprintf(stderr, "%s\n", r.error().str().c_str());
    return kExitBadInput;
  }
  std::printf("wrote %s/report.html and %s/report.md (%zu files)\n", out_dir.c_str(), out_dir.c_str(),
              r->files.size());
  for (const auto& l : r->left_out) std::printf("left out: %s\n", l.c_str());
  std::printf("verdict: %s\n", r->verdict.c_str());
  return r->within ? 0 : 1;
}
