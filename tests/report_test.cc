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
  ASSERT_EQ(r->left_out.size(), 2u);
  EXPECT_NE(r->left_out[0].find("gnuplot not found"), std::string::npos);
  EXPECT_NE(r->left_out[1].find("Graphviz not found"), std::string::npos);
  const std::string html = test::slurp(dir / "report.html");
  EXPECT_EQ(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("Left out"), std::string::npos);
  EXPECT_NE(html.find("Memory per GPU (GiB)"), std::string::npos) << "the tables stay";
}

}  // namespace
}  // namespace tpp
