#include "reports/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace tpp::reports {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A number at `path` (keys separated by '.') in `j`, or an error naming the file and the field.
Expected<double> number(const json& j, const std::string& path, const std::string& file) {
  const json* at = &j;
  std::size_t from = 0;
  while (from <= path.size()) {
    const std::size_t dot = path.find('.', from);
    const std::string key = path.substr(from, dot == std::string::npos ? std::string::npos
                                                                       : dot - from);
    if (!at->is_object() || !at->contains(key))
      return make_error(file, 0, 0, fmt::format("missing field '{}'", path));
    at = &(*at)[key];
    if (dot == std::string::npos) break;
    from = dot + 1;
  }
  if (!at->is_number()) return make_error(file, 0, 0, fmt::format("field '{}' is not a number", path));
  const double v = at->get<double>();
  if (!std::isfinite(v)) return make_error(file, 0, 0, fmt::format("field '{}' is not finite", path));
  return v;
}

double error_pct(double predicted, double measured) {
  return measured != 0 ? 100 * (predicted - measured) / measured : 0;
}

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string gib(double bytes) { return fmt::format("{:.2f}", bytes / (1024.0 * 1024 * 1024)); }

bool write_file(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
  return static_cast<bool>(f);
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Whether `program` is on PATH (or is a path that exists and is executable).
bool have_program(const std::string& program) {
  if (program.find('/') != std::string::npos) return ::access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (!dir.empty() && ::access((fs::path(dir) / program).c_str(), X_OK) == 0) return true;
  return false;
}

std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}

// An SVG a drawing program wrote: non-empty, an <svg> element closed at the end.
bool looks_like_svg(const std::string& s) {
  return s.find("<svg") != std::string::npos && s.rfind("</svg>") != std::string::npos;
}

// Runs `cmd` (stdout and stderr to `log`); true when it exits 0 and `out` is an SVG.
bool draw(const std::string& cmd, const fs::path& out, const fs::path& log) {
  const std::string full = cmd + " >" + shell_quote(log.string()) + " 2>&1";
  const int rc = std::system(full.c_str());
  return rc == 0 && fs::exists(out) && looks_like_svg(read_file(out));
}

// A value as its unit reads best: whole tokens and blocks, two decimals for GiB, rates and
// ratios, three for times.
std::string value_text(double v, const std::string& unit) {
  if (unit == "tokens" || unit == "blocks") return fmt::format("{:.0f} {}", v, unit);
  if (unit == "ms" || unit == "s") return fmt::format("{:.3f} {}", v, unit);
  if (unit == "x") return fmt::format("{:.2f}x", v);
  return fmt::format("{:.2f} {}", v, unit);
}

// The heading a figure gets in the report.
std::string caption(const std::string& svg) {
  if (svg == "memory.svg") return "Memory per GPU, by stage";
  if (svg == "memory_candidates.svg") return "Memory per GPU of each candidate";
  if (svg == "latency_throughput.svg") return "Throughput against latency";
  if (svg == "timeline.svg") return "The pipeline, a few steps";
  if (svg == "kv_usage.svg") return "KV-cache use over the run";
  if (svg == "placement.svg") return "Placement";
  if (svg.rfind("comparison", 0) == 0) return "Predicted beside measured";
  return svg;
}

const char* kStageColours[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759",
                               "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"};

}  // namespace

Expected<RunComparison> compare_run(const json& measured, const std::string& file, double dp) {
  RunComparison rc;
  rc.name = file;
  if (!measured.is_object()) return make_error(file, 0, 0, "not a JSON object (a tpp-run -o measured.json)");
  if (!measured.contains("tpp_measured_version"))
    return make_error(file, 0, 0, "missing field 'tpp_measured_version' (not a tpp-run -o measured.json)");
  for (const char* part : {"predicted", "performance"})
    if (!measured.contains(part) || !measured[part].is_object())
      return make_error(file, 0, 0, fmt::format("missing field '{}'", part));
  if (!measured["predicted"].contains("performance") || !measured["predicted"]["performance"].is_object())
    return make_error(file, 0, 0, "missing field 'predicted.performance'");
  const json& p = measured["predicted"]["performance"];
  const json& m = measured["performance"];
  struct Metric {
    const char* name;
    const char* path;
    const char* unit;
  };
  const Metric metrics[] = {
      {"decode step p50", "decode_step_ms.p50", "ms"}, {"step p50", "step_ms.p50", "ms"},
      {"TTFT p50", "ttft_ms.p50", "ms"},               {"TTFT p99", "ttft_ms.p99", "ms"},
      {"TPOT p50", "tpot_ms.p50", "ms"},               {"TPOT p99", "tpot_ms.p99", "ms"},
      {"ITL p50", "itl_ms.p50", "ms"},                 {"E2E p50", "e2e_ms.p50", "ms"},
      {"output tokens/s", "output_tokens_per_s", "tok/s"}, {"makespan", "makespan_s", "s"}};
  for (const Metric& x : metrics) {
    auto a = number(p, x.path, file), b = number(m, x.path, file);
    if (!a) return make_error(file, 0, 0, "predicted.performance: " + a.error().message);
    if (!b) return make_error(file, 0, 0, "performance: " + b.error().message);
    rc.rows.push_back({x.name, x.unit, *a, *b, error_pct(*a, *b), true});
  }
  // Per stage: compute, TP collectives and the PP send per step (the breakdown is one replica's
  // seconds; the steps are every replica's), and the stage's idle time.
  dp = std::max(1.0, dp);
  auto ps = number(p, "steps", file), ms = number(m, "steps", file);
  if (!ps || !ms) return make_error(file, 0, 0, "missing field 'steps'");
  const json& pb = p.contains("breakdown") ? p["breakdown"] : json::array();
  const json& mb = m.contains("breakdown") ? m["breakdown"] : json::array();
  const double psteps = std::max(1.0, *ps / dp), msteps = std::max(1.0, *ms / dp);
  for (std::size_t s = 0; s < pb.size() && s < mb.size(); ++s) {
    auto get = [&](const json& j, const char* k) { return j.value(k, 0.0); };
    const double pstep = (get(pb[s], "compute") + get(pb[s], "tp_comm") + get(pb[s], "ep_comm") +
                          get(pb[s], "pp_comm")) / psteps * 1e3;
    const double mstep = (get(mb[s], "compute") + get(mb[s], "tp_comm") + get(mb[s], "ep_comm") +
                          get(mb[s], "pp_comm")) / msteps * 1e3;
    const std::pair<const char*, const char*> parts[] = {
        {"compute / step", "compute"}, {"TP comm / step", "tp_comm"}, {"PP send / step", "pp_comm"}};
    for (const auto& [name, key] : parts) {
      const double a = get(pb[s], key) / psteps * 1e3, b = get(mb[s], key) / msteps * 1e3;
      // A component under 2% of its stage's step is shown but is not a finding.
      const bool counts = std::max(a / std::max(pstep, 1e-12), b / std::max(mstep, 1e-12)) >= 0.02;
      rc.rows.push_back({fmt::format("stage {} {}", s, name), "ms", a, b, error_pct(a, b), counts});
    }
  }
  for (const Row& r : rc.rows)
    if (r.counts && std::fabs(r.error_pct) > std::fabs(rc.worst_error_pct)) {
      rc.worst_error_pct = r.error_pct;
      rc.worst_component = r.component;
    }
  return rc;
}

std::string verdict(const std::vector<RunComparison>& runs, double limit_pct) {
  if (runs.empty()) return "no measured run given: prediction only";
  std::vector<std::string> missed;
  double worst = 0;
  std::string worst_what;
  for (const RunComparison& r : runs)
    for (const Row& row : r.rows) {
      if (!row.counts) continue;
      if (std::fabs(row.error_pct) > std::fabs(worst)) {
        worst = row.error_pct;
        worst_what = (runs.size() > 1 ? r.name + ": " : "") + row.component;
      }
      if (limit_pct >= 0 && std::fabs(row.error_pct) > limit_pct)
        missed.push_back(fmt::format("{}{} {:+.1f}%", runs.size() > 1 ? r.name + ": " : "",
                                     row.component, row.error_pct));
    }
  if (limit_pct < 0)
    return fmt::format("largest error {} {:+.1f}% (no --fail-above limit given)",
                       worst_what.empty() ? "none" : worst_what, worst);
  if (missed.empty())
    return fmt::format("within {:.1f}% on every component (limit {:.1f}%)", std::fabs(worst), limit_pct);
  std::string s = fmt::format("{} component{} missed the {:.1f}% limit: ", missed.size(),
                              missed.size() == 1 ? "" : "s", limit_pct);
  for (std::size_t k = 0; k < missed.size(); ++k) s += (k ? ", " : "") + missed[k];
  return s;
}

Expected<std::string> placement_dot(const json& plan, const std::string& file) {
  auto tp = number(plan, "split.tp", file), pp = number(plan, "split.pp", file),
       dp = number(plan, "split.dp", file), per_node = number(plan, "cluster.gpus_per_node", file),
       hidden = number(plan, "model.hidden_size", file);
  for (auto* e : {&tp, &pp, &dp, &per_node, &hidden})
    if (!*e) return e->error();
  const auto T = static_cast<long>(*tp), P = static_cast<long>(*pp), D = static_cast<long>(*dp),
             G = static_cast<long>(*per_node);
  if (T < 1 || P < 1 || D < 1 || G < 1 || T * P * D > 4096)
    return make_error(file, 0, 0, "field 'split' gives no placement to draw (tp, pp, dp >= 1, at most 4096 GPUs)");
  const std::string dtype = plan.contains("serving") ? plan["serving"].value("dtype", "bf16") : "bf16";
  const double act = dtype == "float32" || dtype == "fp32" || dtype == "float" ? 4 : 2;
  // Bytes a token moves: each layer's two TP all-reduces carry its hidden state (vLLM's row-
  // parallel o_proj and down_proj); a PP stage sends the hidden state and the residual.
  const double ar_bytes = 2 * *hidden * act, pp_bytes = 2 * *hidden * act;
  std::string s = "digraph placement {\n  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=11, "
                  "compound=true, nodesep=0.15, ranksep=0.6];\n"
                  "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10, "
                  "fontcolor=white];\n  edge [fontname=\"Helvetica\", fontsize=9];\n";
  const long gpus = T * P * D;
  auto gpu_of = [&](long d, long p, long t) { return d * T * P + p * T + t; };
  for (long node = 0; node * G < gpus; ++node) {
    s += fmt::format("  subgraph cluster_node{} {{\n    label=\"node {}\"; style=\"rounded\"; "
                     "color=\"#555555\"; fontcolor=\"#222222\";\n", node, node);
    for (long d = 0; d < D; ++d)
      for (long p = 0; p < P; ++p) {
        const long first = gpu_of(d, p, 0);
        if (first / G != node) continue;
        // A TP group whole inside this node is boxed; one spanning nodes is drawn per node.
        s += fmt::format("    subgraph cluster_tp_d{}_p{}_n{} {{\n      label=\"DP {} stage {} TP{}\"; "
                         "style=\"dashed\"; color=\"{}\"; fontcolor=\"#222222\";\n",
                         d, p, node, d, p, T, kStageColours[p % 8]);
        for (long t = 0; t < T; ++t) {
          const long g = gpu_of(d, p, t);
          if (g / G != node) continue;
          s += fmt::format("      g{} [label=\"GPU {}\\nrank {}\", fillcolor=\"{}\"];\n", g, g % G, g,
                           kStageColours[p % 8]);
        }
        s += "    }\n";
      }
    s += "  }\n";
  }
  // TP all-reduce: one edge per group (first to last rank), labelled; PP sends between stages.
  for (long d = 0; d < D; ++d)
    for (long p = 0; p < P; ++p) {
      if (T > 1)
        s += fmt::format("  g{} -> g{} [dir=both, color=\"#888888\", label=\"all-reduce x2/layer\\n{:.0f} B/token each\"];\n",
                         gpu_of(d, p, 0), gpu_of(d, p, T - 1), ar_bytes / 2);
      if (p + 1 < P) {
        const long a = gpu_of(d, p, T - 1), b = gpu_of(d, p + 1, 0);
        const bool cross = a / G != b / G;
        s += fmt::format("  g{} -> g{} [color=\"#222222\", penwidth=2, label=\"PP send{}\\n{:.0f} B/token\"];\n",
                         a, b, cross ? " (across nodes)" : "", pp_bytes);
      }
    }
  s += "}\n";
  return s;
}

Expected<ReportResult> write_report(const json& plan, const std::string& plan_file,
                                    const std::vector<json>& measured,
                                    const std::vector<std::string>& measured_files,
                                    const ReportOptions& o,
                                    const std::vector<RunComparison>& vllm_runs,
                                    const std::vector<std::string>& notes) {
  ReportResult r;
  if (!plan.is_object() || !plan.contains("tpp_plan_version"))
    return make_error(plan_file, 0, 0, "missing field 'tpp_plan_version' (not a tpp-plan -o plan.json)");
  for (const char* k : {"model", "cluster", "split", "serving", "predicted"})
    if (!plan.contains(k) || !plan[k].is_object())
      return make_error(plan_file, 0, 0, fmt::format("missing field '{}'", k));
  for (std::size_t k = 0; k < measured.size(); ++k) {
    // A run of another split (a sweep) is divided by its own plan's replicas, when its plan
    // file (measured.json's "plan") can still be read.
    double dp = plan["split"].value("dp", 1.0);
    std::string split;
    if (measured[k].contains("plan") && measured[k]["plan"].is_string()) {
      std::ifstream f(measured[k]["plan"].get<std::string>());
      const json own = f ? json::parse(f, nullptr, false) : json();
      if (own.is_object() && own.contains("split") && own["split"].is_object()) {
        dp = own["split"].value("dp", dp);
        split = fmt::format("TP{} x PP{} x DP{}", own["split"].value("tp", 1L), own["split"].value("pp", 1L),
                            own["split"].value("dp", 1L));
        // A scaled run (another model, e.g. a tiny one on CPU ranks) says which model ran.
        const auto name_of = [](const json& p) {
          return p.contains("model") && p["model"].is_object() ? p["model"].value("name", std::string()) : std::string();
        };
        const std::string own_model = name_of(own);
        if (!own_model.empty() && own_model != name_of(plan)) split = own_model + ", " + split;
      }
    }
    auto c = compare_run(measured[k], k < measured_files.size() ? measured_files[k] : "measured", dp);
    if (!c) return c.error();
    c->split = split;
    r.runs.push_back(*c);
  }
  r.runs.insert(r.runs.end(), vllm_runs.begin(), vllm_runs.end());
  r.verdict = verdict(r.runs, o.fail_above_pct);
  if (o.fail_above_pct >= 0)
    for (const auto& run : r.runs)
      for (const Row& row : run.rows)
        if (row.counts && std::fabs(row.error_pct) > o.fail_above_pct) r.within = false;

  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec || !fs::is_directory(o.out_dir))
    return make_error(o.out_dir, 0, 0, "cannot create the output directory: " + ec.message());
  const fs::path dir = fs::absolute(o.out_dir);

  // What the plan says.
  const json& model = plan["model"];
  const json& cluster = plan["cluster"];
  const json& split = plan["split"];
  const json& pred = plan["predicted"];
  const std::string model_name = model.value("name", model.value("hf_repo", std::string("model")));
  const std::string cluster_name = cluster.value("name", std::string("cluster"));
  const std::string gpu_name = cluster.contains("gpu") ? cluster["gpu"].value("name", std::string("GPU")) : "GPU";
  const long tp = split.value("tp", 1L), pp = split.value("pp", 1L), dp = split.value("dp", 1L);
  const std::string title = fmt::format("{} on {}: TP{} x PP{} x DP{}", model_name, cluster_name, tp, pp, dp);

  // Memory per GPU by stage: a gnuplot stacked bar chart, and the same numbers as a table.
  struct StageMem {
    long stage;
    double weights, activations, non_torch, graphs, kv, total;
  };
  std::vector<StageMem> stages;
  if (pred.contains("memory") && pred["memory"].contains("stages"))
    for (const json& st : pred["memory"]["stages"])
      stages.push_back({st.value("pp_rank", 0L), st.value("weights_bytes", 0.0),
                        st.value("activation_peak_bytes", 0.0), st.value("non_torch_bytes", 0.0),
                        st.value("cuda_graph_bytes", 0.0),
                        std::max(0.0, st.value("kv_cache_bytes", 0.0)), st.value("total_bytes", 0.0)});
  const double budget = pred.contains("memory") ? pred["memory"].value("budget_bytes", 0.0) : 0.0;

  std::vector<std::string> figures;  // SVG files, in the order the HTML shows them
  const bool gnuplot = have_program(o.gnuplot), dot = have_program(o.dot);
  // Writes NAME.dat and NAME.gp and draws NAME.svg with gnuplot, or says why it could not.
  auto chart = [&](const std::string& name, const std::string& what, const std::string& dat,
                   const std::string& gp) {
    write_file(dir / (name + ".dat"), dat);
    write_file(dir / (name + ".gp"), "set terminal svg size 720,420 dynamic font 'Helvetica,11' "
                                     "background rgb 'white'\nset output '" + name + ".svg'\n" + gp);
    r.files.push_back(name + ".dat");
    r.files.push_back(name + ".gp");
    if (!gnuplot) {
      r.left_out.push_back(name + ".svg (" + what + "): gnuplot not found (apt-get install "
                           "gnuplot-nox, or scripts/setup.sh); the tables have the numbers, " +
                           name + ".gp draws it");
    } else if (draw("cd " + shell_quote(dir.string()) + " && " + shell_quote(o.gnuplot) + " " +
                        shell_quote(name + ".gp"),
                    dir / (name + ".svg"), dir / (name + ".log"))) {
      figures.push_back(name + ".svg");
      r.files.push_back(name + ".svg");
    } else {
      r.left_out.push_back(name + ".svg (" + what + "): gnuplot failed (" + name + ".log says why)");
    }
  };
  const double gib_d = 1024.0 * 1024 * 1024;
  if (!stages.empty()) {
    std::string dat = "# stage weights activations non_torch cuda_graphs kv_cache (GiB)\n";
    for (const auto& s : stages)
      dat += fmt::format("\"stage {}\" {} {} {} {} {}\n", s.stage, gib(s.weights), gib(s.activations),
                         gib(s.non_torch), gib(s.graphs), gib(s.kv));
    const double cap = stages.front().total / gib_d;
    chart("memory", "memory per GPU by stage", dat, fmt::format(
        "set title 'Memory per GPU by PP stage of the plan (GiB)'\n"
        "set style data histograms\nset style histogram rowstacked\nset style fill solid 0.85 border -1\n"
        "set boxwidth 0.6\nset key outside right top\nset ylabel 'GiB'\nset yrange [0:{0:.1f}]\nset grid ytics\n"
        "set arrow from graph 0, first {1:.3f} to graph 1, first {1:.3f} nohead dt 2 lw 2 lc rgb '#d62728'\n"
        "set label 'GPU total {1:.1f} GiB' at graph 0.02, first {1:.3f} offset 0,0.7 textcolor rgb '#d62728'\n"
        "{2}"
        "plot 'memory.dat' using 2:xtic(1) title 'weights' lc rgb '#4e79a7', '' using 3 title 'activations' lc rgb '#f28e2b', "
        "'' using 4 title 'non-torch' lc rgb '#bab0ac', '' using 5 title 'CUDA graphs' lc rgb '#b07aa1', "
        "'' using 6 title 'KV cache' lc rgb '#59a14f'\n",
        cap * 1.15, cap,
        budget > 0 ? fmt::format("set arrow from graph 0, first {0:.3f} to graph 1, first {0:.3f} nohead dt 3 lw 1 lc rgb '#555555'\n"
                                 "set label 'budget (utilization) {0:.1f} GiB' at graph 0.02, first {0:.3f} offset 0,-0.8 textcolor rgb '#555555'\n",
                                 budget / gib_d)
                   : std::string()));
  }
  // The search: every simulated candidate's memory (its fullest stage) and its throughput per
  // GPU against TPOT and TTFT, the Pareto front joined, the recommendation marked.
  if (plan.contains("candidates") && plan["candidates"].is_array() && !plan["candidates"].empty()) {
    const json& cands = plan["candidates"];
    auto label = [](const json& c) {
      return fmt::format("TP{}xPP{}xDP{}", c.value("tp", 0L), c.value("pp", 0L), c.value("dp", 0L));
    };
    // Memory: every candidate. A GPU's memory depends on TP and PP alone, so the candidates that
    // differ only in DP share a bar, labelled with their DPs; at most 40 bars (the rest named).
    struct Bar { long tp, pp; std::vector<long> dps; bool recommended; const json* c; };
    std::vector<Bar> bars;
    for (const json& c : cands) {
      const long ctp = c.value("tp", 0L), cpp = c.value("pp", 0L);
      auto it = std::find_if(bars.begin(), bars.end(), [&](const Bar& b) { return b.tp == ctp && b.pp == cpp; });
      if (it == bars.end()) { bars.push_back({ctp, cpp, {}, false, &c}); it = bars.end() - 1; }
      it->dps.push_back(c.value("dp", 0L));
      it->recommended = it->recommended || c.value("recommended", false);
    }
    std::string mdat = "# candidate weights activations non_torch cuda_graphs kv_cache total (GiB)\n";
    double cap = 0, budget_all = 0;
    const size_t max_bars = 40;
    for (size_t i = 0; i < bars.size() && i < max_bars; ++i) {
      Bar& b = bars[i];
      std::sort(b.dps.begin(), b.dps.end());
      b.dps.erase(std::unique(b.dps.begin(), b.dps.end()), b.dps.end());
      const json& m = (*b.c)["memory"];
      cap = std::max(cap, m.value("total_bytes", 0.0) / gib_d);
      budget_all = std::max(budget_all, m.value("budget_bytes", 0.0) / gib_d);
      mdat += fmt::format("\"TP{}xPP{} DP{}{}\" {} {} {} {} {}\n", b.tp, b.pp, fmt::join(b.dps, ","), b.recommended ? " *" : "",
                          gib(m.value("weights_bytes", 0.0)), gib(m.value("activation_peak_bytes", 0.0)),
                          gib(m.value("non_torch_bytes", 0.0)), gib(m.value("cuda_graph_bytes", 0.0)),
                          gib(m.value("kv_cache_bytes", 0.0)));
    }
    if (bars.size() > max_bars)
      r.left_out.push_back(fmt::format("memory_candidates.svg shows the first {} of {} TP x PP shapes; the rest are in plan.json's candidates",
                                        max_bars, bars.size()));
    if (!bars.empty())
      chart("memory_candidates", "memory per GPU of each candidate", mdat, fmt::format(
          "set title 'Memory per GPU of every simulated candidate (fullest stage; candidates differing only in DP share a bar; * recommended)' font ',10'\n"
          "set style data histograms\nset style histogram rowstacked\nset style fill solid 0.85 border -1\n"
          "set boxwidth 0.7\nset key outside right top\nset ylabel 'GiB'\nset yrange [0:{0:.1f}]\nset grid ytics\n"
          "set xtics rotate by -40 font ',9'\n"
          "set arrow from graph 0, first {1:.3f} to graph 1, first {1:.3f} nohead dt 2 lw 2 lc rgb '#d62728'\n"
          "set label 'GPU capacity {1:.1f} GiB' at graph 0.02, first {1:.3f} offset 0,0.8 textcolor rgb '#d62728'\n"
          "{2}"
          "plot 'memory_candidates.dat' using 2:xtic(1) title 'weights' lc rgb '#4e79a7', '' using 3 title 'activations' lc rgb '#f28e2b', "
          "'' using 4 title 'non-torch' lc rgb '#bab0ac', '' using 5 title 'CUDA graphs' lc rgb '#b07aa1', "
          "'' using 6 title 'KV cache' lc rgb '#59a14f'\n", cap * 1.15, cap,
          budget_all > 0 ? fmt::format("set arrow from graph 0, first {0:.3f} to graph 1, first {0:.3f} nohead dt 3 lw 1 lc rgb '#555555'\n", budget_all)
                         : std::string()));
    // Throughput against latency: blocks of all / pareto (sorted by TPOT) / recommended.
    std::string tdat = "# tpot_p50_ms ttft_p50_ms tok_s_per_gpu label\n";
    std::vector<const json*> front;
    for (const json& c : cands) {
      tdat += fmt::format("{} {} {} \"{}\"\n", c.value("tpot_ms_p50", 0.0), c.value("ttft_ms_p50", 0.0),
                          c.value("output_tokens_per_s_per_gpu", 0.0), label(c));
      if (c.value("pareto", false)) front.push_back(&c);
    }
    std::sort(front.begin(), front.end(), [](const json* a, const json* b) {
      return a->value("tpot_ms_p50", 0.0) < b->value("tpot_ms_p50", 0.0);
    });
    tdat += "\n\n";
    for (const json* c : front)
      tdat += fmt::format("{} {} {} \"{}\"\n", c->value("tpot_ms_p50", 0.0), c->value("ttft_ms_p50", 0.0),
                          c->value("output_tokens_per_s_per_gpu", 0.0), label(*c));
    tdat += "\n\n";
    for (const json& c : cands)
      if (c.value("recommended", false))
        tdat += fmt::format("{} {} {} \"{}\"\n", c.value("tpot_ms_p50", 0.0), c.value("ttft_ms_p50", 0.0),
                            c.value("output_tokens_per_s_per_gpu", 0.0), label(c));
    chart("latency_throughput", "throughput per GPU against TPOT and TTFT", tdat,
          "set terminal svg size 900,420 dynamic font 'Helvetica,11' background rgb 'white'\n"
          "set output 'latency_throughput.svg'\nset multiplot layout 1,2 title 'Output tokens/s per GPU against latency (p50), every simulated split'\n"
          "set grid\nset key bottom right font ',9'\nset ylabel 'output tokens/s per GPU'\nset logscale x\n"
          "set xlabel 'TPOT p50 (ms)'\n"
          "plot 'latency_throughput.dat' index 0 using 1:3 with points pt 7 ps 0.6 lc rgb '#9a9a9a' title 'candidate', "
          "'' index 1 using 1:3 with linespoints pt 7 ps 0.8 lw 1.5 lc rgb '#4e79a7' title 'Pareto front', "
          "'' index 2 using 1:3 with points pt 3 ps 2.2 lw 2 lc rgb '#d62728' title 'recommended', "
          "'' index 2 using 1:3:4 with labels offset 0,1.2 font ',9' notitle\n"
          "set xlabel 'TTFT p50 (ms)'\n"
          "plot 'latency_throughput.dat' index 0 using 2:3 with points pt 7 ps 0.6 lc rgb '#9a9a9a' title 'candidate', "
          "'' index 1 using 2:3 with points pt 7 ps 0.8 lc rgb '#4e79a7' title 'Pareto (by TPOT)', "
          "'' index 2 using 2:3 with points pt 3 ps 2.2 lw 2 lc rgb '#d62728' title 'recommended', "
          "'' index 2 using 2:3:4 with labels offset 0,1.2 font ',9' notitle\nunset multiplot\n");
  }
  // A few steps of the pipeline, stage by stage: the engine's host time, compute (one colour a
  // batch), TP collectives and the PP send; white is idle (bubbles).
  if (pred.contains("performance") && pred["performance"].contains("timeline")) {
    const json& tl = pred["performance"]["timeline"]["stages"];
    if (tl.is_array() && !tl.empty()) {
      const char* batch_colours[] = {"0x4e79a7", "0xf28e2b", "0x59a14f", "0xe15759", "0x76b7b2", "0xedc948"};
      double t0 = 1e300, t1 = 0;
      for (const json& x : tl) t0 = std::min(t0, x.value("start_s", 0.0));
      std::string dat = "# x_center_ms y x_half y_half rgb (host, compute by batch, TP comm, PP send)\n";
      long first_step = tl.front().value("step", 0L);
      for (const json& x : tl) {
        double at = (x.value("start_s", 0.0) - t0) * 1e3;
        const double y = x.value("pp", 0L);
        const long batch = x.value("step", 0L) - first_step;
        const std::pair<double, std::string> parts[] = {
            {x.value("host_s", 0.0) * 1e3, "0xbab0ac"},
            {x.value("compute_s", 0.0) * 1e3, batch_colours[batch % 6]},
            {x.value("tp_comm_s", 0.0) * 1e3, "0x333333"},
            {x.value("pp_comm_s", 0.0) * 1e3, "0xb07aa1"}};
        for (const auto& [w, colour] : parts) {
          if (w <= 0) continue;
          dat += fmt::format("{} {} {} 0.35 {}\n", at + w / 2, y, w / 2, colour);
          at += w;
        }
        t1 = std::max(t1, at);
      }
      const long stages_n = pred.value("pp", 1L);
      chart("timeline", "a few pipeline steps", dat, fmt::format(
          "set title 'The pipeline: {} consecutive steps of one replica from mid-run'\n"
          "set xlabel 'ms'\nset ylabel 'PP stage'\nset yrange [{}:-0.6]\nset ytics 1\nset xrange [0:{:.3f}]\nset grid xtics\n"
          "set style fill solid 0.9 border lc rgb '#ffffff'\nset key outside bottom center horizontal font ',9'\n"
          "plot 'timeline.dat' using 1:2:3:4:5 with boxxyerror lc rgb variable notitle, "
          "NaN with boxes lc rgb '#4e79a7' title 'compute (one colour a batch)', NaN with boxes lc rgb '#bab0ac' title 'engine host', "
          "NaN with boxes lc rgb '#333333' title 'TP collectives', NaN with boxes lc rgb '#b07aa1' title 'PP send', "
          "NaN with boxes lc rgb '#ffffff' title 'white: idle (bubble)'\n",
          tl.back().value("step", 0L) - first_step + 1, stages_n - 0.4, t1 * 1.02));
    }
  }
  if (pred.contains("performance") && pred["performance"].contains("kv_usage")) {
    std::string dat = "# seconds fraction_of_kv_blocks_in_use\n";
    for (const json& p : pred["performance"]["kv_usage"])
      if (p.is_array() && p.size() == 2) dat += fmt::format("{} {}\n", p[0].get<double>(), 100 * p[1].get<double>());
    chart("kv_usage", "KV-cache use over the simulated run", dat,
          "set title 'KV cache in use over the simulated run (replicas averaged)'\nset xlabel 'seconds'\n"
          "set ylabel '% of the KV blocks'\nset yrange [0:105]\nset grid\nunset key\n"
          "plot 'kv_usage.dat' using 1:2 with lines lw 2 lc rgb '#59a14f'\n");
  }
  // With measurements: each run's components, predicted beside measured, the error above.
  for (std::size_t k = 0; k < r.runs.size(); ++k) {
    std::string dat = "# component predicted_ms measured_ms error_pct\n";
    int n = 0;
    for (const Row& row : r.runs[k].rows)
      if (row.unit == "ms" && row.counts) {
        dat += fmt::format("\"{}\" {} {} {:.1f}\n", row.component, row.predicted, row.measured, row.error_pct);
        ++n;
      }
    if (n == 0) continue;
    const std::string name = r.runs.size() == 1 ? "comparison" : fmt::format("comparison_{}", k + 1);
    chart(name, "predicted beside measured, " + r.runs[k].name, dat, fmt::format(
        "set title 'Predicted beside measured: {} (label: error)' font ',10'\n"
        "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.85 border -1\n"
        "set boxwidth 0.9\nset logscale y\nset ylabel 'ms (log)'\nset grid ytics\nset key top right\n"
        "set xtics rotate by -35 font ',9'\n"
        "plot '{}.dat' using 2:xtic(1) title 'predicted' lc rgb '#4e79a7', '' using 3 title 'measured' lc rgb '#f28e2b', "
        "'' using 0:(($2>$3?$2:$3)*1.25):(sprintf('%+.0f%%', $4)) with labels font ',9' notitle\n",
        fs::path(r.runs[k].name).filename().string(), name));
  }

  auto placement = placement_dot(plan, plan_file);
  if (!placement) return placement.error();
  write_file(dir / "placement.dot", *placement);
  r.files.push_back("placement.dot");
  if (!dot) {
    r.left_out.push_back("placement.svg: Graphviz not found (apt-get install graphviz, or scripts/setup.sh); "
                         "placement.dot holds the diagram");
  } else if (draw(shell_quote(o.dot) + " -Tsvg -o " + shell_quote((dir / "placement.svg").string()) + " " +
                      shell_quote((dir / "placement.dot").string()),
                  dir / "placement.svg", dir / "placement.log")) {
    figures.push_back("placement.svg");
    r.files.push_back("placement.svg");
  } else {
    r.left_out.push_back("placement.svg: dot failed (placement.log says why)");
  }

  // report.md
  std::string md = "# " + title + "\n\n";
  md += fmt::format("Plan: `{}`. Model {} ({} layers, hidden {}), cluster {} ({} nodes x {} {}).\n\n",
                    plan_file, model_name, model.value("num_layers", model.value("num_hidden_layers", 0L)),
                    model.value("hidden_size", 0L), cluster_name, cluster.value("nodes", 0L),
                    cluster.value("gpus_per_node", 0L), gpu_name);
  if (pred.contains("performance")) {
    const json& perf = pred["performance"];
    auto p50 = [&](const char* k) { return perf.contains(k) ? perf[k].value("p50", 0.0) : 0.0; };
    md += fmt::format("Predicted: TTFT p50 {:.1f} ms, TPOT p50 {:.2f} ms, {:.0f} output tokens/s "
                      "({:.1f} per GPU).\n\n", p50("ttft_ms"), p50("tpot_ms"),
                      perf.value("output_tokens_per_s", 0.0), perf.value("output_tokens_per_s_per_gpu", 0.0));
  }
  if (plan.contains("reasons") && plan["reasons"].is_string())
    md += "**Recommended:** " + plan["reasons"].get<std::string>() + "\n\n";
  // The ranked candidates (at most 10), then any others shown in the charts are in plan.json.
  std::vector<std::vector<std::string>> ranked;
  if (plan.contains("candidates") && plan["candidates"].is_array())
    for (const json& c : plan["candidates"]) {
      if (c.value("rank", 0) <= 0 || c.value("rank", 0) > 10) continue;
      ranked.push_back({fmt::format("{}{}", c.value("rank", 0), c.value("recommended", false) ? "*" : ""),
                        fmt::format("TP{} x PP{} x DP{}", c.value("tp", 0L), c.value("pp", 0L), c.value("dp", 0L)),
                        fmt::format("{}", c.value("gpus", 0L)),
                        fmt::format("{:.1f} / {:.1f}", c.value("ttft_ms_p50", 0.0), c.value("ttft_ms_p99", 0.0)),
                        fmt::format("{:.2f} / {:.2f}", c.value("tpot_ms_p50", 0.0), c.value("tpot_ms_p99", 0.0)),
                        fmt::format("{:.1f}", c.value("output_tokens_per_s_per_gpu", 0.0)),
                        fmt::format("{:.0f}", c.value("output_tokens_per_s", 0.0)),
                        c.value("pareto", false) ? "yes" : ""});
    }
  const char* ranked_head[] = {"rank", "split", "GPUs", "TTFT p50 / p99 (ms)", "TPOT p50 / p99 (ms)",
                               "tok/s per GPU", "tok/s", "Pareto"};
  if (!ranked.empty()) {
    md += "## Ranked candidates (* recommended)\n\n|";
    for (const char* h : ranked_head) md += std::string(" ") + h + " |";
    md += "\n|---|---|---|---|---|---|---|---|\n";
    for (const auto& row : ranked) {
      md += "|";
      for (const auto& cell : row) md += " " + cell + " |";
      md += "\n";
    }
    md += "\n";
  }
  if (plan.contains("launch") && plan["launch"].contains("vllm"))
    md += "Launch (vLLM):\n\n```sh\n" + plan["launch"]["vllm"].get<std::string>() + "\n```\n\n";
  if (plan.contains("launch") && plan["launch"].contains("sglang"))
    md += "or with SGLang:\n\n```sh\n" + plan["launch"]["sglang"].get<std::string>() + "\n```\n\n";
  md += "## Memory per GPU (GiB)\n\n| stage | weights | activations | non-torch | CUDA graphs | KV cache | GPU total |\n"
        "|---|---|---|---|---|---|---|\n";
  for (const auto& s : stages)
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", s.stage, gib(s.weights), gib(s.activations),
                      gib(s.non_torch), gib(s.graphs), gib(s.kv), gib(s.total));
  // Every run at a glance: the headline errors and the worst component.
  auto headline = [](const RunComparison& run, const char* a, const char* b) {
    for (const Row& row : run.rows)
      if (row.component == a || row.component == b) return fmt::format("{:+.1f}%", row.error_pct);
    return std::string("-");
  };
  if (r.runs.size() > 1) {
    md += "\n## The runs at a glance\n\n| run | split | decode step p50 | TTFT p50 | TPOT p50 | throughput | worst component |\n"
          "|---|---|---|---|---|---|---|\n";
    for (const auto& run : r.runs)
      md += fmt::format("| `{}` | {} | {} | {} | {} | {} | {} {:+.1f}% |\n", fs::path(run.name).filename().string(),
                        run.split.empty() ? "-" : run.split, headline(run, "decode step p50", "-"),
                        headline(run, "TTFT p50", "TTFT median"), headline(run, "TPOT p50", "TPOT median"),
                        headline(run, "output tokens/s", "output throughput"),
                        run.worst_component.empty() ? "none" : run.worst_component, run.worst_error_pct);
  }
  for (const auto& run : r.runs) {
    md += "\n## Predicted beside measured: `" + run.name + "`" + (run.split.empty() ? "" : " (" + run.split + ")") +
          "\n\n| component | predicted | measured | error |\n|---|---|---|---|\n";
    for (const Row& row : run.rows)
      md += fmt::format("| {} | {} | {} | {:+.1f}%{} |\n", row.component, value_text(row.predicted, row.unit),
                        value_text(row.measured, row.unit), row.error_pct, row.counts ? "" : " (under 2% of the step)");
  }
  for (const auto& n : notes) md += "\n- " + n;
  if (!notes.empty()) md += "\n";
  md += "\n**Verdict:** " + r.verdict + "\n";
  if (!figures.empty()) {
    md += "\n## Figures\n\n";
    for (const auto& f : figures) md += "### " + caption(f) + "\n\n![" + f + "](" + f + ")\n\n";
  }
  if (!r.left_out.empty()) {
    md += "\n## Left out\n\n";
    for (const auto& l : r.left_out) md += "- " + l + "\n";
  }
  write_file(dir / "report.md", md);
  r.files.push_back("report.md");

  // report.html: self-contained (the SVGs inline, no script, no network).
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html_escape(title) +
                  "</title>\n<style>body{font-family:Helvetica,Arial,sans-serif;max-width:980px;margin:2em auto;"
                  "color:#222;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px "
                  "solid #ddd}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 9px;"
                  "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
                  "pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}.bad{color:#b00}"
                  ".verdict{font-weight:bold;padding:.4em;background:#eef5ee}.figure svg{max-width:100%;height:auto}"
                  "</style></head><body>\n<h1>" + html_escape(title) + "</h1>\n";
  // The markdown's prose lines, as paragraphs, up to the first table.
  h += "<p>Plan: <code>" + html_escape(plan_file) + "</code>. " + html_escape(model_name) + " on " +
       html_escape(cluster_name) + " (" + html_escape(gpu_name) + ").</p>\n";
  if (pred.contains("performance")) {
    const json& perf = pred["performance"];
    auto p50 = [&](const char* k) { return perf.contains(k) ? perf[k].value("p50", 0.0) : 0.0; };
    h += fmt::format("<p>Predicted: TTFT p50 {:.1f} ms, TPOT p50 {:.2f} ms, {:.0f} output tokens/s ({:.1f} per GPU).</p>\n",
                     p50("ttft_ms"), p50("tpot_ms"), perf.value("output_tokens_per_s", 0.0),
                     perf.value("output_tokens_per_s_per_gpu", 0.0));
  }
  if (plan.contains("reasons") && plan["reasons"].is_string())
  {
    std::string reasons = html_escape(plan["reasons"].get<std::string>());
    for (std::size_t at = reasons.find('\n'); at != std::string::npos; at = reasons.find('\n', at + 4))
      reasons.replace(at, 1, "<br>");
    h += "<p><b>Recommended:</b> " + reasons + "</p>\n";
  }
  if (!ranked.empty()) {
    h += "<h2>Ranked candidates (* recommended)</h2>\n<table><tr>";
    for (const char* c : ranked_head) h += std::string("<th>") + c + "</th>";
    h += "</tr>\n";
    for (const auto& row : ranked) {
      h += "<tr>";
      for (const auto& cell : row) h += "<td>" + html_escape(cell) + "</td>";
      h += "</tr>\n";
    }
    h += "</table>\n";
  }
  if (plan.contains("launch") && plan["launch"].contains("vllm"))
    h += "<h2>Launch</h2><p>vLLM:</p><pre>" + html_escape(plan["launch"]["vllm"].get<std::string>()) + "</pre>\n";
  if (plan.contains("launch") && plan["launch"].contains("sglang"))
    h += "<p>or SGLang:</p><pre>" + html_escape(plan["launch"]["sglang"].get<std::string>()) + "</pre>\n";
  h += "<h2>Memory per GPU (GiB)</h2>\n<table><tr><th>stage</th><th>weights</th><th>activations</th><th>non-torch</th>"
       "<th>CUDA graphs</th><th>KV cache</th><th>GPU total</th></tr>\n";
  for (const auto& s : stages)
    h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                     s.stage, gib(s.weights), gib(s.activations), gib(s.non_torch), gib(s.graphs), gib(s.kv), gib(s.total));
  h += "</table>\n";
  if (r.runs.size() > 1) {
    h += "<h2>The runs at a glance</h2>\n<table><tr><th>run</th><th>split</th><th>decode step p50</th><th>TTFT p50</th>"
         "<th>TPOT p50</th><th>throughput</th><th>worst component</th></tr>\n";
    for (const auto& run : r.runs)
      h += fmt::format("<tr><td><code>{}</code></td><td style=\"white-space:nowrap\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {:+.1f}%</td></tr>\n",
                       html_escape(fs::path(run.name).filename().string()), html_escape(run.split.empty() ? "-" : run.split),
                       headline(run, "decode step p50", "-"), headline(run, "TTFT p50", "TTFT median"),
                       headline(run, "TPOT p50", "TPOT median"), headline(run, "output tokens/s", "output throughput"),
                       html_escape(run.worst_component.empty() ? "none" : run.worst_component), run.worst_error_pct);
    h += "</table>\n";
  }
  for (const auto& run : r.runs) {
    h += "<h2>Predicted beside measured: <code>" + html_escape(run.name) + "</code>" +
         (run.split.empty() ? "" : " (" + html_escape(run.split) + ")") + "</h2>\n<table><tr><th>component</th>"
         "<th>predicted</th><th>measured</th><th>error</th></tr>\n";
    for (const Row& row : run.rows) {
      const bool bad = o.fail_above_pct >= 0 && row.counts && std::fabs(row.error_pct) > o.fail_above_pct;
      h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td{}>{:+.1f}%{}</td></tr>\n",
                       html_escape(row.component), value_text(row.predicted, row.unit),
                       value_text(row.measured, row.unit), bad ? " class=\"bad\"" : "", row.error_pct,
                       row.counts ? "" : " *");
    }
    h += "</table>\n<p>* under 2% of the stage's step: shown, not counted in the verdict.</p>\n";
  }
  if (!notes.empty()) {
    h += "<ul>\n";
    for (const auto& n : notes) h += "<li>" + html_escape(n) + "</li>\n";
    h += "</ul>\n";
  }
  h += "<p class=\"verdict\">Verdict: " + html_escape(r.verdict) + "</p>\n";
  for (const auto& f : figures) {
    std::string svg = read_file(dir / f);
    const std::size_t at = svg.find("<svg");
    h += "<h2>" + caption(f) +
         "</h2>\n<div class=\"figure\" data-source=\"" + f + "\">" + svg.substr(at) + "</div>\n";
  }
  if (!r.left_out.empty()) {
    h += "<h2>Left out</h2><ul>\n";
    for (const auto& l : r.left_out) h += "<li>" + html_escape(l) + "</li>\n";
    h += "</ul>\n";
  }
  h += "</body></html>\n";
  write_file(dir / "report.html", h);
  r.files.push_back("report.html");
  return r;
}

}  // namespace tpp::reports
