// Reports: a plan (tpp-plan -o plan.json) and, optionally, measured runs of it (tpp-run -o
// measured.json) as a report a user opens: report.md and a self-contained report.html, the
// prediction beside each measurement component by component with a verdict, a chart of each
// GPU's memory (gnuplot) and a placement diagram (Graphviz). Reads JSON only: it never runs
// the simulator, so what it shows is what the plan and the runs recorded.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace tpp::reports {

// One component of a run, predicted beside measured. error_pct = (predicted - measured) /
// measured x 100 (0 when measured is 0).
struct Row {
  std::string component, unit;
  double predicted = 0, measured = 0, error_pct = 0;
  bool counts = true;  // part of the verdict (a component under 2% of its step's time is not)
};

// A measured run (measured.json) compared with the prediction it carries for exactly the
// requests that ran.
struct RunComparison {
  std::string name;   // the file it came from
  std::string split;  // "TP2 x PP1 x DP1" where the run's own plan says (else empty)
  std::vector<Row> rows;
  double worst_error_pct = 0;  // the largest |error| among the rows that count, signed
  std::string worst_component;
};

// The comparison of one measured.json (its "predicted" and "performance", both in tpp-plan's
// performance schema) of a plan with `dp` replicas. `file` names it in errors, which name the
// missing field.
Expected<RunComparison> compare_run(const nlohmann::json& measured, const std::string& file,
                                    double dp = 1);

// "within 7.0% on every component", or which components missed `limit_pct` and by how much;
// without a limit, the worst component.
std::string verdict(const std::vector<RunComparison>& runs, double limit_pct);

struct ReportOptions {
  std::string out_dir;
  double fail_above_pct = -1;  // the verdict's limit (--fail-above); < 0: none
  // Programs the figures are drawn with; a missing one leaves its figures out, and the report
  // says which and how to get them.
  std::string gnuplot = "gnuplot", dot = "dot";
};

struct ReportResult {
  std::vector<std::string> files;      // written, relative to out_dir
  std::vector<std::string> left_out;   // figures not drawn, each with why and how to get it
  std::vector<RunComparison> runs;
  std::string verdict;
  bool within = true;  // every counted component within fail_above_pct (true without a limit)
};

// Writes report.md, report.html and the figures into options.out_dir (created if needed).
// `plan_file` and `measured_files` name the inputs in the report and in errors.
// `vllm_runs` are comparisons with the user's own vLLM (reports/vllm.h), shown and judged like
// the measured runs; `notes` are shown under the tables (what a comparison approximated).
Expected<ReportResult> write_report(const nlohmann::json& plan, const std::string& plan_file,
                                    const std::vector<nlohmann::json>& measured,
                                    const std::vector<std::string>& measured_files,
                                    const ReportOptions& options,
                                    const std::vector<RunComparison>& vllm_runs = {},
                                    const std::vector<std::string>& notes = {});

// The Graphviz source of the plan's placement: nodes, their GPUs, PP stages by colour, TP
// groups boxed, the links that carry all-reduces and stage transfers labelled with their bytes
// per token. Ranks are laid out as the executor lays them out (TP innermost, then PP, then DP).
Expected<std::string> placement_dot(const nlohmann::json& plan, const std::string& plan_file);

}  // namespace tpp::reports
