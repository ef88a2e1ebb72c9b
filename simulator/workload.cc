#include "simulator/workload.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>
#include <numbers>
#include <optional>
#include <random>
#include <string_view>
#include <system_error>

#include <nlohmann/json.hpp>

#include "common/data_path.h"
#include "common/fields.h"

namespace tpp::sim {
namespace {

constexpr double kMinRate = 1e-6;  // requests per second
constexpr double kMaxRate = 1e6;
constexpr double kMaxMean = 1e6;   // tokens
const std::vector<std::string> kProcesses = {"poisson", "fixed", "closed"};
const std::vector<std::string> kDistributions = {"fixed", "uniform", "normal", "lognormal"};
constexpr const char* kTraceColumns = "arrival_s,input_tokens,output_tokens";

// ---- Random numbers that are the same on every machine (see workload.h).

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : gen_(seed) {}
  double uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {  // Box-Muller; the second value of the pair is not used
    double u1 = 1.0 - uniform();  // (0, 1]
    double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  double exponential() { return -std::log(1.0 - uniform()); }

 private:
  std::mt19937_64 gen_;
};

// One independent stream per use (splitmix64 of the seed and the stream number).
std::uint64_t stream_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t z = seed + stream * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// ---- Length distributions.

enum class DistKind { kFixed, kUniform, kNormal, kLognormal };

struct Dist {
  DistKind kind = DistKind::kFixed;
  double mean = 0, stddev = 0;
  std::int64_t min = 1, max = kMaxRequestTokens;  // fixed: min == max == value
};

std::int64_t round_clamp(double x, const Dist& d) {
  return std::llround(std::clamp(x, static_cast<double>(d.min), static_cast<double>(d.max)));
}

std::int64_t sample(const Dist& d, Rng& rng) {
  switch (d.kind) {
    case DistKind::kFixed: return d.min;
    case DistKind::kUniform: {
      std::int64_t n = d.max - d.min + 1;
      auto k = static_cast<std::int64_t>(rng.uniform() * static_cast<double>(n));
      return d.min + std::min(k, n - 1);
    }
    case DistKind::kNormal: return round_clamp(d.mean + d.stddev * rng.normal(), d);
    case DistKind::kLognormal: {  // mean and stddev are of the counts, not of their log
      double s2 = std::log(1.0 + d.stddev * d.stddev / (d.mean * d.mean));
      double mu = std::log(d.mean) - s2 / 2;
      return round_clamp(std::exp(mu + std::sqrt(s2) * rng.normal()), d);
    }
  }
  return d.min;
}

std::optional<Error> read_dist(const Doc& doc, const Node& node, const std::string& section,
                               Dist& d) {
  Fields f(doc, node, section);
  std::string kind = f.choice("distribution", kDistributions);
  if (!f.ok()) return f.finish();
  if (kind == "fixed") {
    d.kind = DistKind::kFixed;
    d.min = d.max = f.integer("value", 1, kMaxRequestTokens);
  } else if (kind == "uniform") {
    d.kind = DistKind::kUniform;
    d.min = f.integer("min", 1, kMaxRequestTokens);
    d.max = f.integer("max", 1, kMaxRequestTokens);
  } else {
    d.kind = kind == "normal" ? DistKind::kNormal : DistKind::kLognormal;
    d.mean = f.number("mean", 1, kMaxMean);
    d.stddev = f.number("stddev", 0, kMaxMean);
    d.min = f.integer_or("min", 1, 1, kMaxRequestTokens);
    d.max = f.integer_or("max", kMaxRequestTokens, 1, kMaxRequestTokens);
  }
  if (f.ok() && d.min > d.max)
    f.fail("max", "field 'max' in " + section + " is " + std::to_string(d.max) +
                      ", less than min " + std::to_string(d.min));
  return f.finish();
}

// ---- Arrivals.

std::optional<Error> read_arrival(const Doc& doc, const Node& node, Workload& w) {
  Fields f(doc, node, "arrival");
  std::string process = f.choice("process", kProcesses);
  if (!f.ok()) return f.finish();
  if (process == "closed") {
    w.arrival = ArrivalProcess::kClosedLoop;
    if (f.has("rate_per_s"))
      f.fail("rate_per_s", "field 'rate_per_s' in arrival does not apply to process closed "
                           "(it keeps 'concurrency' requests in flight)");
    w.concurrency = f.integer("concurrency", 1, kMaxWorkloadRequests);
  } else {
    w.arrival = process == "poisson" ? ArrivalProcess::kPoisson : ArrivalProcess::kFixedRate;
    if (f.has("concurrency"))
      f.fail("concurrency", "field 'concurrency' in arrival applies only to process closed");
    w.rate_per_s = f.number("rate_per_s", kMinRate, kMaxRate);
  }
  return f.finish();
}

void generate(Workload& w, std::int64_t n, const Dist& in, const Dist& out) {
  Rng gaps(stream_seed(w.seed, 1)), ins(stream_seed(w.seed, 2)), outs(stream_seed(w.seed, 3));
  w.requests.reserve(static_cast<std::size_t>(n));
  double t = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    Request r;
    r.id = i;
    if (w.arrival == ArrivalProcess::kFixedRate) {
      r.arrival_s = static_cast<double>(i) / w.rate_per_s;
    } else if (w.arrival == ArrivalProcess::kPoisson) {
      r.arrival_s = t;  // whole nanoseconds: see workload.h
      t += std::round(gaps.exponential() / w.rate_per_s * 1e9) / 1e9;
    }
    r.input_tokens = sample(in, ins);
    r.output_tokens = sample(out, outs);
    w.requests.push_back(r);
  }
}

// ---- Trace CSV.

std::string_view trim(std::string_view s) {
  std::size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::string shortest(double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

struct Cell {
  std::string_view text;  // trimmed
  int col;                // 1-based
};

std::vector<Cell> split_row(std::string_view line) {
  std::vector<Cell> cells;
  std::size_t start = 0;
  for (;;) {
    std::size_t comma = line.find(',', start);
    std::string_view raw = line.substr(start, comma == std::string_view::npos
                                                  ? std::string_view::npos : comma - start);
    std::size_t lead = std::min(raw.find_first_not_of(" \t"), raw.size());
    cells.push_back({trim(raw), static_cast<int>(start + lead) + 1});
    if (comma == std::string_view::npos) return cells;
    start = comma + 1;
  }
}

bool is_header(std::string_view line) {
  auto c = split_row(line);
  return c.size() == 3 && c[0].text == "arrival_s" && c[1].text == "input_tokens" &&
         c[2].text == "output_tokens";
}

template <class T>
bool parse_full(std::string_view s, T& v) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && !s.empty();
}

struct RowPos {
  const std::string& path;
  int line;
};

std::optional<Error> check_count(const RowPos& at, const Cell& c, const char* name,
                                 std::int64_t v) {
  if (v >= 1 && v <= kMaxRequestTokens) return std::nullopt;
  return make_error(at.path, at.line, c.col,
                    std::string(name) +
                        (v < 1 ? " must be at least 1, got "
                               : " must be at most " + std::to_string(kMaxRequestTokens) +
                                     ", got ") +
                        std::string(c.text));
}

// One data row; `prev` is the previous row's arrival time.
std::optional<Error> parse_row(const RowPos& at, std::string_view line, double prev,
                               Request& r) {
  auto cells = split_row(line);
  auto bad = [&](int col) {
    return make_error(at.path, at.line, col, std::string("expected ") + kTraceColumns +
                                                 " as numbers, got '" + clip(line) + "'");
  };
  if (cells.size() != 3) return bad(1);
  if (!parse_full(cells[0].text, r.arrival_s) || !std::isfinite(r.arrival_s))
    return bad(cells[0].col);
  if (!parse_full(cells[1].text, r.input_tokens)) return bad(cells[1].col);
  if (!parse_full(cells[2].text, r.output_tokens)) return bad(cells[2].col);
  r.arrival_s += 0.0;  // -0 -> 0
  if (r.arrival_s < 0)
    return make_error(at.path, at.line, cells[0].col,
                      "arrival_s must be at least 0, got " + std::string(cells[0].text));
  if (r.arrival_s < prev)
    return make_error(at.path, at.line, cells[0].col,
                      "arrival_s " + std::string(cells[0].text) +
                          " is earlier than the previous row's " + shortest(prev) +
                          " (arrival times must be non-decreasing)");
  if (auto e = check_count(at, cells[1], "input_tokens", r.input_tokens)) return e;
  return check_count(at, cells[2], "output_tokens", r.output_tokens);
}

std::optional<Error> read_rows(const std::string& text, const std::string& path,
                               std::int64_t cap, std::vector<Request>& out) {
  std::string_view all(text);
  if (all.substr(0, 3) == "\xEF\xBB\xBF") all.remove_prefix(3);  // a UTF-8 byte order mark
  bool first = true;
  double prev = 0;
  std::size_t pos = 0;
  for (int line_no = 1; pos < all.size() && static_cast<std::int64_t>(out.size()) < cap;
       ++line_no) {
    std::size_t nl = std::min(all.find('\n', pos), all.size());
    std::string_view line = all.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::string_view t = trim(line);
    if (t.empty() || t.front() == '#') continue;
    bool header = first && is_header(line);
    first = false;
    if (header) continue;
    Request r;
    r.id = static_cast<std::int64_t>(out.size());
    if (auto e = parse_row(RowPos{path, line_no}, line, prev, r)) return e;
    prev = r.arrival_s;
    out.push_back(r);
  }
  return std::nullopt;
}

std::optional<Error> read_trace(const Doc& doc, const Node& node, std::int64_t cap,
                                Workload& w) {
  std::string path = (std::filesystem::path(doc.file).parent_path() / node.text).string();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return make_error(doc.file, node.line, node.col,
                      "field 'trace' in workload names '" + node.text + "', which is a directory");
  auto text = read_text_file(path, "trace", kMaxTraceBytes);
  if (!text) {
    if (text.error().line > 0) return text.error();  // a position in the trace itself
    return make_error(doc.file, node.line, node.col,
                      "field 'trace' in workload names '" + node.text + "': " +
                          text.error().message);
  }
  if (auto e = read_rows(*text, path, cap, w.requests)) return e;
  if (w.requests.empty())
    return make_error(doc.file, node.line, node.col,
                      "field 'trace' in workload names '" + node.text + "', which has no rows");
  w.trace = path;
  double span = w.requests.back().arrival_s - w.requests.front().arrival_s;
  w.rate_per_s = span > 0 ? static_cast<double>(w.requests.size() - 1) / span : 0;
  return std::nullopt;
}

// ---- Latency objectives.

constexpr double kMaxSloMs = 1e9;

std::optional<Error> read_slo(const Doc& doc, const Node& node, Workload& w) {
  if (node.kind != Node::Kind::Map) {
    if (node.kind == Node::Kind::String && node.text == "none") {
      w.slo = Slo{};
      return std::nullopt;
    }
    return make_error(doc.file, node.line, node.col,
                      "field 'slo' in workload must be a map {ttft_ms, tpot_ms} or none");
  }
  Fields f(doc, node, "slo");
  Slo s;
  s.ttft_ms = f.number_or("ttft_ms", 0, 0.001, kMaxSloMs);
  s.tpot_ms = f.number_or("tpot_ms", 0, 0.001, kMaxSloMs);
  if (f.ok() && s.ttft_ms == 0 && s.tpot_ms == 0)
    f.fail("ttft_ms", "field 'slo' in workload needs ttft_ms or tpot_ms (or write slo: none)");
  if (auto e = f.finish()) return e;
  w.slo = s;
  return std::nullopt;
}

// ---- Requests written out in the file: [arrival_s, input_tokens, output_tokens] each, as a
// plan file embeds them.

std::optional<Error> read_requests(const Doc& doc, const Node& node, std::int64_t cap,
                                   Workload& w) {
  auto bad = [&](const Node& at, const std::string& why) {
    return make_error(doc.file, at.line, at.col, "field 'requests' in workload: " + why);
  };
  if (node.kind != Node::Kind::Seq || node.items.empty())
    return bad(node, "must be a non-empty list of [arrival_s, input_tokens, output_tokens]");
  double prev = 0;
  for (const Node& item : node.items) {
    if (static_cast<std::int64_t>(w.requests.size()) >= cap) break;
    const bool shape = item.kind == Node::Kind::Seq && item.items.size() == 3 &&
                       (item.items[0].kind == Node::Kind::Int ||
                        item.items[0].kind == Node::Kind::Float) &&
                       item.items[1].kind == Node::Kind::Int &&
                       item.items[2].kind == Node::Kind::Int;
    if (!shape) return bad(item, "each request must be [arrival_s, input_tokens, output_tokens]");
    Request r;
    r.id = static_cast<std::int64_t>(w.requests.size());
    r.arrival_s = item.items[0].f + 0.0;
    r.input_tokens = item.items[1].i;
    r.output_tokens = item.items[2].i;
    if (!(r.arrival_s >= prev))
      return bad(item, "arrival_s must be at least 0 and non-decreasing, got " +
                           item.items[0].text);
    for (auto [v, name] : {std::pair{r.input_tokens, "input_tokens"},
                           std::pair{r.output_tokens, "output_tokens"}})
      if (v < 1 || v > kMaxRequestTokens)
        return bad(item, std::string(name) + " must be from 1 to " +
                             std::to_string(kMaxRequestTokens) + ", got " + std::to_string(v));
    prev = r.arrival_s;
    w.requests.push_back(r);
  }
  return std::nullopt;
}

// ---- The workload file.

struct Sources {
  const Node* trace = nullptr;
  const Node* requests = nullptr;
  const Node* arrival = nullptr;
  const Node* input = nullptr;
  const Node* output = nullptr;
};

// Either a trace, or arrival with both length distributions.
void check_sources(Fields& f, const Sources& s) {
  if (!f.ok()) return;
  const char* generated[] = {"arrival", "input_tokens", "output_tokens"};
  if (s.requests) {
    for (const char* key : {"trace", "input_tokens", "output_tokens"})
      if (f.has(key))
        return f.fail(key, std::string("field '") + key +
                               "' in workload cannot be given with 'requests' (the requests give "
                               "their arrival times and lengths)");
  } else if (s.trace) {
    for (const char* key : generated)
      if (f.has(key))
        return f.fail(key, std::string("field '") + key +
                               "' in workload cannot be given with 'trace' (the trace gives "
                               "arrival times and lengths)");
  } else if (!s.arrival && !s.input && !s.output) {
    f.fail("trace", "workload needs 'arrival', 'input_tokens' and 'output_tokens', or a "
                    "'trace'");
  } else {
    const Node* given[] = {s.arrival, s.input, s.output};
    for (int k = 0; k < 3; ++k)
      if (!given[k]) f.missing(generated[k]);
  }
}

}  // namespace

nlohmann::json workload_to_json(const Workload& w) {
  nlohmann::json j = {{"name", w.name}, {"seed", w.seed}};
  if (w.arrival == ArrivalProcess::kClosedLoop)
    j["arrival"] = {{"process", "closed"}, {"concurrency", w.concurrency}};
  nlohmann::json rs = nlohmann::json::array();
  for (const Request& r : w.requests) rs.push_back({r.arrival_s, r.input_tokens, r.output_tokens});
  j["requests"] = rs;
  if (w.slo) {
    if (w.slo->ttft_ms == 0 && w.slo->tpot_ms == 0) {
      j["slo"] = "none";
    } else {
      j["slo"] = nlohmann::json::object();
      if (w.slo->ttft_ms > 0) j["slo"]["ttft_ms"] = w.slo->ttft_ms;
      if (w.slo->tpot_ms > 0) j["slo"]["tpot_ms"] = w.slo->tpot_ms;
    }
  }
  return j;
}

const char* arrival_name(ArrivalProcess a) {
  switch (a) {
    case ArrivalProcess::kPoisson: return "poisson";
    case ArrivalProcess::kFixedRate: return "fixed";
    case ArrivalProcess::kClosedLoop: return "closed";
  }
  return "";
}

Expected<Workload> workload_from_doc(const Doc& doc) {
  Workload w;
  w.file = doc.file;
  Fields f(doc, doc.root, "workload");
  w.name = f.string("name");
  w.seed = static_cast<std::uint64_t>(
      f.integer_or("seed", 0, 0, std::numeric_limits<std::int64_t>::max()));
  Sources s;
  if (!f.string_or("trace", "").empty()) s.trace = f.raw("trace");
  s.requests = f.raw("requests");
  s.arrival = f.map_or_null("arrival");
  s.input = f.map_or_null("input_tokens");
  s.output = f.map_or_null("output_tokens");
  const Node* slo = f.raw("slo");
  check_sources(f, s);
  std::int64_t n = s.trace || s.requests
                       ? f.integer_or("num_requests", kMaxWorkloadRequests, 1,
                                      kMaxWorkloadRequests)
                       : f.integer("num_requests", 1, kMaxWorkloadRequests);
  if (auto e = f.finish()) return *e;
  if (slo)
    if (auto e = read_slo(doc, *slo, w)) return *e;
  if (s.requests) {
    if (s.arrival) {  // a closed loop over the given lengths
      if (auto e = read_arrival(doc, *s.arrival, w)) return *e;
      if (w.arrival != ArrivalProcess::kClosedLoop)
        return make_error(doc.file, s.arrival->line, s.arrival->col,
                          "field 'arrival' in workload with 'requests' must be a closed loop "
                          "(the requests give their own arrival times)");
    }
    if (auto e = read_requests(doc, *s.requests, n, w)) return *e;
    if (w.arrival != ArrivalProcess::kClosedLoop) {  // replayed at their times, as a trace
      const double span = w.requests.back().arrival_s - w.requests.front().arrival_s;
      w.rate_per_s = span > 0 ? static_cast<double>(w.requests.size() - 1) / span : 0;
    } else {
      for (auto& r : w.requests) r.arrival_s = 0;
    }
    return w;
  }
  if (s.trace) {
    if (auto e = read_trace(doc, *s.trace, n, w)) return *e;
    return w;
  }
  Dist in, out;
  if (auto e = read_arrival(doc, *s.arrival, w)) return *e;
  if (auto e = read_dist(doc, *s.input, "input_tokens", in)) return *e;
  if (auto e = read_dist(doc, *s.output, "output_tokens", out)) return *e;
  generate(w, n, in, out);
  return w;
}

Expected<Workload> load_workload(const std::string& name_or_path) {
  auto path = resolve_input(name_or_path, Catalog::kWorkloads);
  if (!path) return path.error();
  auto doc = load_yaml_file(*path);
  if (!doc) return doc.error();
  return workload_from_doc(*doc);
}

}  // namespace tpp::sim
