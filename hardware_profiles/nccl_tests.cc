#include "hardware_profiles/nccl_tests.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "common/file.h"

namespace tpp::hw {
namespace {

std::vector<std::string> split_ws(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool parse_int(const std::string& s, std::int64_t& v) {
  if (s.empty()) return false;
  char* end = nullptr;
  const long long x = std::strtoll(s.c_str(), &end, 10);
  if (*end != '\0') return false;
  v = x;
  return true;
}

bool parse_num(const std::string& s, double& v) {
  if (s.empty()) return false;
  char* end = nullptr;
  v = std::strtod(s.c_str(), &end);
  return *end == '\0' && std::isfinite(v);
}

// The value after `key` among whitespace-separated words ("nThread 1 nGpus 8 ... graph: 0").
bool word_after(const std::vector<std::string>& w, const std::string& key, std::int64_t& v) {
  for (std::size_t k = 0; k + 1 < w.size(); ++k)
    if (w[k] == key) return parse_int(w[k + 1], v);
  return false;
}

// nccl-tests program names and the words a file name may use, to CollectiveTable's op names.
std::string op_from_name(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  s.erase(std::remove(s.begin(), s.end(), '-'), s.end());
  static const std::pair<const char*, const char*> kNames[] = {
      {"allreduce", "all_reduce"}, {"allgather", "all_gather"}, {"reducescatter", "reduce_scatter"},
      {"alltoall", "all_to_all"},  {"sendrecv", "send_recv"}};
  for (auto [word, op] : kNames)
    if (s.find(word) != std::string::npos) return op;
  return "";
}

const char* program_of(const std::string& op) {
  if (op == "all_reduce") return "all_reduce_perf";
  if (op == "all_gather") return "all_gather_perf";
  if (op == "reduce_scatter") return "reduce_scatter_perf";
  if (op == "all_to_all") return "alltoall_perf";
  return "sendrecv_perf";
}

}  // namespace

Expected<NcclTestsRun> parse_nccl_tests(const std::string& text, const std::string& file,
                                        const std::string& op) {
  NcclTestsRun run;
  run.file = file;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  bool header_seen = false, params_seen = false;
  std::size_t lead = 0, group = 0;  // columns before the first "time"; columns a group
  std::set<std::string> hosts, pids;
  std::int64_t rank_lines = 0, declared_ranks = 0, declared_nodes = 0;
  std::string tests_version, nccl_version;
  auto fail = [&](int at, const std::string& msg) -> Error { return make_error(file, at, 0, msg); };
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // A launcher's rank label: srun -l ("0: "), OpenMPI --tag-output ("[1,0]<stdout>:").
    static const std::regex kLabel(R"(^\s*(\d+: |\[\d+,\d+\]<std(out|err)>:))");
    line = std::regex_replace(line, kLabel, "", std::regex_constants::format_first_only);
    const auto w = split_ws(line);
    if (w.empty()) continue;
    if (w[0][0] == '#') {
      std::vector<std::string> h = w;
      h[0].erase(0, 1);
      if (h[0].empty()) h.erase(h.begin());
      if (h.empty()) continue;
      if (h.size() >= 4 && h[0] == "Collective" && h[1] == "test" && h[2] == "starting:") {
        run.program = h[3];
        run.op = op_from_name(h[3]);
      } else if (h[0] == "nThread") {
        params_seen = true;
        if (!word_after(h, "nThread", run.threads) || !word_after(h, "nGpus", run.gpus_per_thread) ||
            run.threads < 1 || run.gpus_per_thread < 1)
          return fail(n, "the parameter line has no valid 'nThread N nGpus N'");
        std::int64_t g = 0;
        if (word_after(h, "graph:", g)) run.graph = g > 0;
      } else if (h[0] == "Rank" && h.size() >= 2) {
        ++rank_lines;
        for (std::size_t k = 0; k + 1 < h.size(); ++k) {
          if (h[k] == "on") hosts.insert(h[k + 1]);
          if (h[k] == "Pid") pids.insert(h[k + 1]);
        }
        // "... device 0 [0x1b] NVIDIA H100 80GB HBM3": the name after the bus id.
        if (rank_lines == 1)
          for (std::size_t k = 0; k < h.size(); ++k)
            if (!h[k].empty() && h[k][0] == '[') {
              std::string name;
              for (std::size_t j = k + 1; j < h.size(); ++j) name += (name.empty() ? "" : " ") + h[j];
              run.device = name;
              break;
            }
      } else if (h[0] == "tpp-ranks:" && h.size() >= 2) {
        // A transcribed table whose Rank lines were not published: "# tpp-ranks: 16 nodes: 2".
        if (!parse_int(h[1], declared_ranks) || declared_ranks < 1 ||
            (h.size() >= 4 && (h[2] != "nodes:" || !parse_int(h[3], declared_nodes) || declared_nodes < 1)))
          return fail(n, "the line '# tpp-ranks: N nodes: M' needs positive whole numbers");
      } else if (h[0] == "nccl-tests" && h.size() >= 3 && h[1] == "version") {
        tests_version = h[2];
      } else if (h[0] == "NCCL" && h.size() >= 3 && h[1] == "version") {
        nccl_version = h[2];
      } else if (h[0] == "size" && std::find(h.begin(), h.end(), "time") != h.end()) {
        const auto t = std::find(h.begin(), h.end(), "time");
        lead = static_cast<std::size_t>(t - h.begin());
        group = 3;
        const auto next = t + 3;
        if (next != h.end() && (*next == "#wrong" || *next == "error" || *next == "wrong")) group = 4;
        if (lead < 3 || h[1] != "count" || h[2] != "type")
          return fail(n, "the column header does not start with 'size count type'");
        header_seen = true;
      }
      continue;
    }
    std::int64_t bytes = 0;
    if (!parse_int(w[0], bytes)) continue;  // prose (NCCL INFO lines, warnings) around the table
    if (!header_seen)
      return fail(n, "a row of sizes before the column header '#  size  count  type ... time algbw busbw'");
    if (w.size() < lead + group)
      return fail(n, fmt::format("a row of {} columns where the header has {} before the times and {} a "
                                 "group (time algbw busbw{})", w.size(), lead, group, group == 4 ? " #wrong" : ""));
    NcclTestsRow r;
    r.bytes = bytes;
    r.line = n;
    if (!parse_int(w[1], r.count) || r.count < 0 || bytes < 0)
      return fail(n, "field 'count' must be a non-negative integer, not '" + clip(w[1]) + "'");
    if (run.dtype.empty()) run.dtype = w[2];
    for (int g = 0; g < 2; ++g) {
      const std::size_t at = lead + static_cast<std::size_t>(g) * group;
      if (at >= w.size()) break;
      double t = 0;
      if (w[at] == "N/A") continue;
      if (!parse_num(w[at], t) || t <= 0)
        return fail(n, fmt::format("field 'time' ({}) must be a positive number of microseconds, not '{}'",
                                   g == 0 ? "out-of-place" : "in-place", clip(w[at])));
      if (group == 4 && at + 3 < w.size() && w[at + 3] != "N/A") {
        double wrong = 0;
        if (parse_num(w[at + 3], wrong) && wrong != 0)
          return fail(n, fmt::format("field '#wrong' ({}) is {}: the run gave wrong results; rerun it before "
                                     "importing", g == 0 ? "out-of-place" : "in-place", w[at + 3]));
      }
      (g == 0 ? r.out_of_place_us : r.in_place_us) = t;
    }
    if (r.out_of_place_us == 0 && r.in_place_us == 0) return fail(n, "a row with neither time given");
    if (r.count == 0 || r.bytes == 0) continue;  // sizes too small for the rank count
    if (!run.rows.empty() && r.bytes <= run.rows.back().bytes) {
      if (r.bytes == run.rows.back().bytes) continue;  // a size repeated after alignment
      return fail(n, fmt::format("sizes must increase: {} after {}", r.bytes, run.rows.back().bytes));
    }
    run.rows.push_back(r);
  }
  if (run.op.empty()) {
    run.op = op_from_name(op);
    if (run.op.empty()) run.op = op_from_name(std::filesystem::path(file).filename().string());
  }
  if (run.op.empty())
    return fail(0, "cannot tell which collective this is: no '# Collective test starting:' line and "
                   "none of all_reduce, all_gather, reduce_scatter, alltoall, sendrecv in the file name (pass --op)");
  if (run.program.empty()) run.program = program_of(run.op);
  if (!params_seen)
    return fail(0, "not nccl-tests output: no '# nThread N nGpus N ...' parameter line");
  if (run.rows.empty()) return fail(0, "no rows of sizes and times");
  run.processes = pids.empty() ? 1 : static_cast<std::int64_t>(pids.size());
  run.ranks = rank_lines > 0 ? rank_lines : declared_ranks > 0 ? declared_ranks : run.threads * run.gpus_per_thread;
  run.nodes = !hosts.empty() ? static_cast<std::int64_t>(hosts.size()) : declared_nodes;
  if (run.ranks < 2 && run.op != "send_recv")
    return fail(0, fmt::format("a {}-rank {} is not a collective between GPUs", run.ranks, run.op));
  if (!tests_version.empty()) run.version = "nccl-tests " + tests_version;
  if (!nccl_version.empty()) run.version += (run.version.empty() ? "NCCL " : ", NCCL ") + nccl_version;
  return run;
}

Expected<NcclTestsRun> read_nccl_tests(const std::string& path, const std::string& op) {
  auto text = read_text_file(path, "nccl-tests output", 64u << 20);
  if (!text) return text.error();
  return parse_nccl_tests(*text, path, op);
}

std::vector<CollectiveTable> nccl_tests_tables(const NcclTestsRun& run, std::int64_t gpus_per_node) {
  std::vector<CollectiveTable> out;
  const bool inter = run.nodes > 1 || (run.nodes == 0 && run.ranks > gpus_per_node);
  const std::string how =
      fmt::format("{} ({}): {} ranks{}, {} process{} x {} thread{} x {} GPU{} (-g), {}, {}{}{}", run.program,
                  run.version.empty() ? "version not printed" : run.version, run.ranks,
                  run.nodes > 0 ? fmt::format(" on {} node{}", run.nodes, run.nodes > 1 ? "s" : "") : "",
                  run.processes, run.processes > 1 ? "es" : "", run.threads, run.threads > 1 ? "s" : "",
                  run.gpus_per_thread, run.gpus_per_thread > 1 ? "s" : "", run.dtype,
                  run.graph ? "CUDA graph (-G)" : "no CUDA graph", run.device.empty() ? "" : ", ",
                  run.device);
  for (int in_place = 0; in_place < 2; ++in_place) {
    CollectiveTable t;
    t.op = run.op;
    t.scope = inter ? "inter_node" : "intra_node";
    t.ranks = run.op == "send_recv" ? std::max<std::int64_t>(2, run.ranks) : run.ranks;
    t.library = "nccl";
    t.in_place = in_place ? CollectiveTable::Known::kYes : CollectiveTable::Known::kNo;
    t.cuda_graph = run.graph ? CollectiveTable::Known::kYes : CollectiveTable::Known::kNo;
    t.conditions = how;
    t.source = fmt::format("{} ({} columns), imported by tpp-profile --import-nccl-tests",
                           std::filesystem::path(run.file).filename().string(),
                           in_place ? "in-place" : "out-of-place");
    for (const auto& r : run.rows) {
      const double us = in_place ? r.in_place_us : r.out_of_place_us;
      if (us > 0) t.points.push_back({r.bytes, us});
    }
    if (!t.points.empty()) out.push_back(std::move(t));
  }
  return out;
}

std::string collective_table_yaml(const CollectiveTable& t, const std::string& indent) {
  auto quote = [](const std::string& s) {
    std::string q = "\"";
    for (char c : s) q += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
    return q + "\"";
  };
  std::string y = fmt::format("{0}- op: {1}\n{0}  scope: {2}\n{0}  ranks: {3}\n{0}  library: {4}\n", indent,
                              t.op, t.scope, t.ranks, t.library);
  if (t.in_place != CollectiveTable::Known::kUnknown)
    y += fmt::format("{}  in_place: {}\n", indent, t.in_place == CollectiveTable::Known::kYes);
  if (t.cuda_graph != CollectiveTable::Known::kUnknown)
    y += fmt::format("{}  cuda_graph: {}\n", indent, t.cuda_graph == CollectiveTable::Known::kYes);
  if (!t.conditions.empty()) y += fmt::format("{}  conditions: {}\n", indent, quote(t.conditions));
  y += fmt::format("{}  source: {}\n{}  points:\n", indent, quote(t.source), indent);
  for (const auto& p : t.points) y += fmt::format("{}    - [{}, {}]\n", indent, p.bytes, p.time_us);
  return y;
}

}  // namespace tpp::hw
