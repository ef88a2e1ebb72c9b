// tpp-report (reports/): a known plan against a known measurement gives the known errors and
// verdict; the files the HTML embeds exist and are SVGs; the tables carry the JSON's numbers; a
// missing drawing program leaves its figure out and says so; bad input names the file and field.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "reports/report.h"
#include "reports/vllm.h"
#include "test_util.h"

namespace tpp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json perf(double decode, double ttft, double tpot, double tok_s, double compute_s, double tp_s) {
  json p;
  for (const char* k : {"decode_step_ms", "step_ms", "itl_ms"}) p[k] = {{"p50", decode}, {"p99", decode}};
  p["ttft_ms"] = {{"p50", ttft}, {"p99", 2 * ttft}};
  p["tpot_ms"] = {{"p50", tpot}, {"p99", tpot}};
  p["e2e_ms"] = {{"p50", ttft + 100 * tpot}};
  p["output_tokens_per_s"] = tok_s;
  p["makespan_s"] = 10.0;
  p["steps"] = 1000;
  p["breakdown"] = json::array({{{"stage", 0}, {"compute", compute_s}, {"tp_comm", tp_s},
                                 {"pp_comm", 0.0}, {"ep_comm", 0.0}, {"bubble", 0.0}}});
  return p;
}

json measured_run(double scale) {
  json m;
  m["tpp_measured_version"] = 1;
  m["predicted"]["performance"] = perf(10, 100, 12, 1000, 8.0, 2.0);
  m["performance"] = perf(10 * scale, 100 * scale, 12 * scale, 1000 / scale, 8.0 * scale, 0.001);
  return m;
}

TEST(Report, KnownRunGivesKnownErrors) {
  auto c = reports::compare_run(measured_run(1.25), "m.json");
  ASSERT_TRUE(c) << c.error().str();
  auto row = [&](const std::string& name) {
    for (const auto& r : c->rows)
      if (r.component == name) return r;
    ADD_FAILURE() << "no row " << name;
    return reports::Row{};
  };
  // predicted / measured = 1 / 1.25: -20%.
  EXPECT_NEAR(row("decode step p50").error_pct, -20.0, 1e-9);
  EXPECT_NEAR(row("TTFT p50").error_pct, -20.0, 1e-9);
  EXPECT_NEAR(row("output tokens/s").error_pct, 25.0, 1e-9);
  EXPECT_NEAR(row("stage 0 compute / step").predicted, 8.0, 1e-12);  // 8 s over 1000 steps, ms
  EXPECT_NEAR(row("stage 0 compute / step").measured, 10.0, 1e-12);
  // The measured TP time is 0.01% of its step: shown, not a finding, not the worst.
  EXPECT_FALSE(row("stage 0 PP send / step").counts);
  EXPECT_EQ(c->worst_component, "stage 0 TP comm / step") << "2 ms predicted, 0.001 ms measured";
  std::vector<reports::RunComparison> runs{*c};
  EXPECT_NE(reports::verdict(runs, 30).find("1 component missed the 30.0% limit: stage 0 TP comm"),
            std::string::npos)
      << reports::verdict(runs, 30);
  auto same = reports::compare_run(measured_run(1.0), "m.json");
  ASSERT_TRUE(same);
  same->rows.pop_back();  // drop the TP and PP rows: the rest are exact
  same->rows.pop_back();
  EXPECT_EQ(reports::verdict({*same}, 5), "within 0.0% on every component (limit 5.0%)");
}

TEST(Report, MissingFieldIsNamed) {
  json m = measured_run(1);
  m["performance"].erase("tpot_ms");
  auto c = reports::compare_run(m, "run.json");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().str(), "run.json: error: performance: missing field 'tpot_ms.p50'");
  json not_measured = json::object();
  EXPECT_NE(reports::compare_run(not_measured, "x.json").error().str().find("tpp_measured_version"),
            std::string::npos);
}

// A plan from tpp-plan itself (tiny-llama on the 4-CPU test cluster at TP2 x PP2).
json tiny_plan(const std::string& name) {
  const std::string path = test::write_temp(name, "");
  auto r = test::tpp_plan("--model " + test::example("tiny-llama.yaml") + " --cluster " +
                          std::string(TPP_TEST_DATA) + "/cpu4.yaml --tp 2 --pp 2 --dp 1 "
                          "--dtype float32 --enforce-eager --workload " +
                          std::string(TPP_TEST_DATA) + "/../../workloads/loop.yaml -o " + path);
  EXPECT_EQ(r.code, 0) << r.err;
  return json::parse(test::slurp(path));
}

TEST(Report, PlanOnlyReportEmbedsItsFiguresAndCarriesThePlansNumbers) {
  json plan = tiny_plan("plan.json");
  const fs::path dir = fs::path(test::write_temp("x", "")).parent_path() / "report";
  reports::ReportOptions o;
  o.out_dir = dir.string();
  auto r = reports::write_report(plan, "plan.json", {}, {}, o);
  ASSERT_TRUE(r) << r.error().str();
  const std::string html = test::slurp(dir / "report.html");
  const std::string md = test::slurp(dir / "report.md");
  for (const auto& f : r->files) EXPECT_TRUE(fs::exists(dir / f)) << f;
  // Every figure the HTML embeds names a file that exists and is a whole SVG.
  for (std::size_t at = html.find("data-source=\""); at != std::string::npos;
       at = html.find("data-source=\"", at + 1)) {
    const std::size_t from = at + 13, to = html.find('"', from);
    const std::string f = html.substr(from, to - from);
    ASSERT_TRUE(fs::exists(dir / f)) << f;
    const std::string svg = test::slurp(dir / f);
    EXPECT_NE(svg.find("<svg"), std::string::npos) << f;
    const std::size_t end = svg.rfind("</svg>");
    ASSERT_NE(end, std::string::npos) << f;
    EXPECT_EQ(svg.find_first_not_of(" \r\n", end + 6), std::string::npos) << "only space after </svg>: " << f;
  }
  if (r->left_out.empty()) {
    EXPECT_NE(html.find("data-source=\"memory.svg\""), std::string::npos);
    EXPECT_NE(html.find("data-source=\"placement.svg\""), std::string::npos);
  }
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org")) << "no network references";
  // The memory table's figures are the plan's, stage by stage.
  for (const json& st : plan["predicted"]["memory"]["stages"]) {
    const std::string line = fmt::format(
        "| {} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} |", st["pp_rank"].get<int>(),
        st["weights_bytes"].get<double>() / (1 << 30), st["activation_peak_bytes"].get<double>() / (1 << 30),
        st["non_torch_bytes"].get<double>() / (1 << 30), st["cuda_graph_bytes"].get<double>() / (1 << 30),
        st["kv_cache_bytes"].get<double>() / (1 << 30), st["total_bytes"].get<double>() / (1 << 30));
    EXPECT_NE(md.find(line), std::string::npos) << line << "\n" << md;
  }
  EXPECT_NE(md.find("no measured run given"), std::string::npos);
  // The placement: 4 ranks, 2 stages, each TP pair boxed, one PP send.
  const std::string dot = test::slurp(dir / "placement.dot");
  EXPECT_NE(dot.find("DP 0 stage 1 TP2"), std::string::npos) << dot;
  EXPECT_NE(dot.find("g1 -> g2 [color=\"#222222\", penwidth=2, label=\"PP send"), std::string::npos) << dot;
}

TEST(Report, MissingProgramsLeaveFiguresOutAndSaySo) {
  json plan = tiny_plan("plan.json");
  const fs::path dir = fs::path(test::write_temp("x", "")).parent_path() / "report";
  reports::ReportOptions o;
  o.out_dir = dir.string();
  o.gnuplot = "/nonexistent/gnuplot";
  o.dot = "/nonexistent/dot";
  auto r = reports::write_report(plan, "plan.json", {}, {}, o);
  ASSERT_TRUE(r) << r.error().str();
  // memory, timeline, KV use (gnuplot) and the placement (Graphviz): each named, with the way
  // to get it.
  ASSERT_EQ(r->left_out.size(), 4u);
  int gnuplot = 0, graphviz = 0;
  for (const auto& l : r->left_out) {
    gnuplot += l.find("gnuplot not found (apt-get install gnuplot-nox") != std::string::npos;
    graphviz += l.find("placement.svg: Graphviz not found (apt-get install graphviz") != std::string::npos;
  }
  EXPECT_EQ(gnuplot, 3);
  EXPECT_EQ(graphviz, 1);
  const std::string html = test::slurp(dir / "report.html");
  EXPECT_EQ(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("Left out"), std::string::npos);
  EXPECT_NE(html.find("Memory per GPU (GiB)"), std::string::npos) << "the tables stay";
}

}  // namespace
}  // namespace tpp

namespace tpp {
namespace {

std::string vllm_data(const std::string& f) { return std::string(TPP_TEST_DATA) + "/vllm/" + f; }

// The samples in tests/data/vllm were written for these tests from vLLM's own source (the
// f-strings that print them, versions 0.6.6 to 0.11.0; docs/reports.md); their figures are
// made up.
TEST(VllmInputs, ServerLogsOfBothEngines) {
  auto v1 = reports::parse_vllm_log(test::slurp(vllm_data("server_v1.log")), "v1.log");
  ASSERT_TRUE(v1) << v1.error().str();
  EXPECT_EQ(v1->engine, "V1");
  EXPECT_EQ(v1->version, "0.11.0");
  EXPECT_EQ(v1->tp, 1);
  EXPECT_EQ(v1->pp, 1);
  EXPECT_EQ(v1->max_model_len, 8192);
  EXPECT_DOUBLE_EQ(v1->weights_gib, 14.9889);
  EXPECT_DOUBLE_EQ(v1->kv_cache_gib, 54.13);
  EXPECT_EQ(v1->kv_cache_tokens, 443456) << "thousands commas read";
  EXPECT_DOUBLE_EQ(v1->max_concurrency, 54.13);
  EXPECT_DOUBLE_EQ(v1->cuda_graph_gib, 0.57);
  auto v0 = reports::parse_vllm_log(test::slurp(vllm_data("server_v0.log")), "v0.log");
  ASSERT_TRUE(v0) << v0.error().str();
  EXPECT_EQ(v0->engine, "V0");
  EXPECT_EQ(v0->gpu_blocks, 28069);
  EXPECT_GT(v0->kv_cache_gib, 0);
  auto none = reports::parse_vllm_log("INFO hello\nINFO world\n", "other.log");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().str(),
            "other.log: error: no vLLM start-up figures found: expected 'GPU KV cache size: N tokens' "
            "or 'Available KV cache memory' (V1), or '# GPU blocks: N' (V0)");
}

TEST(VllmInputs, LogBesideThePlansMemoryAndAWrongSplitRefused) {
  reports::VllmLog log;
  log.tp = 1;
  log.pp = 1;
  log.kv_cache_tokens = 1000;
  log.weights_gib = 2.0;
  json plan;
  plan["split"] = {{"tp", 1}, {"pp", 1}};
  plan["predicted"]["memory"] = {{"kv_cache_tokens", 1100}, {"kv_cache_bytes", 0},
                                 {"stages", json::array({{{"weights_bytes", 1.5 * (1 << 30)}}})}};
  auto c = reports::compare_vllm_log(plan, "plan.json", log, "s.log");
  ASSERT_TRUE(c) << c.error().str();
  ASSERT_EQ(c->rows.size(), 2u) << "only what the log gave";
  EXPECT_NEAR(c->rows[0].error_pct, -25.0, 1e-9) << c->rows[0].component;
  EXPECT_NEAR(c->rows[1].error_pct, 10.0, 1e-9) << c->rows[1].component;
  log.tp = 4;
  auto wrong = reports::compare_vllm_log(plan, "plan.json", log, "s.log");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().str(), "s.log: error: tensor_parallel_size=4, pipeline_parallel_size=1 is "
                                 "not the plan's split (TP1 x PP1 in plan.json)");
}

TEST(VllmInputs, BenchResultReSimulatedWithItsOwnLoad) {
  const std::string plan = test::write_temp("plan.json", "");
  auto r = test::tpp_plan("--model " + test::example("llama-3.1-8b.yaml") +
                          " --cluster h100x1 --tp 1 --pp 1 --dp 1 --max-model-len 8192 "
                          "--workload chat -o " + plan);
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* f : {"bench_new.json", "bench_old.json", "bench_new_nodetail.json"}) {
    const json bench = json::parse(test::slurp(vllm_data(f)));
    std::vector<std::string> notes;
    auto c = reports::compare_vllm_bench(plan, bench, f, &notes);
    ASSERT_TRUE(c) << c.error().str();
    EXPECT_EQ(notes.size(), std::string(f) == "bench_new_nodetail.json" ? 1u : 0u) << f;
    // The measured column is the file's; the prediction is a simulation of 8 requests at
    // concurrency 4: every one finishes, so the throughputs agree within the sample's rounding.
    bool saw_tpot = false;
    for (const auto& row : c->rows) {
      if (row.component == "TPOT median") {
        saw_tpot = true;
        EXPECT_DOUBLE_EQ(row.measured, bench["median_tpot_ms"].get<double>());
      }
      EXPECT_GT(row.predicted, 0) << row.component;
    }
    EXPECT_TRUE(saw_tpot) << f;
  }
  json bad = json::parse(test::slurp(vllm_data("bench_new.json")));
  bad["request_rate"] = "fast";
  auto e = reports::compare_vllm_bench(plan, bad, "b.json", nullptr);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().str(), "b.json: error: field 'request_rate' is neither a number nor \"inf\"");
}

}  // namespace
}  // namespace tpp
