// Workloads: the shipped catalog, deterministic generation, the distributions' moments, the
// arrival processes, CSV traces, and every kind of bad input asserted verbatim.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "common/data_path.h"
#include "simulator/workload.h"
#include "test_util.h"

namespace tpp {
namespace {

using sim::ArrivalProcess;
using sim::Request;
using sim::Workload;

const std::string kRoot = std::string(TPP_EXAMPLES) + "/../..";

const char* kBase = R"(name: w
num_requests: 100
seed: 3
arrival:
  process: poisson
  rate_per_s: 4
input_tokens: {distribution: lognormal, mean: 1000, stddev: 500}
output_tokens: {distribution: normal, mean: 200, stddev: 50, min: 1, max: 4096}
)";

Workload load_text(const std::string& text) {
  auto w = sim::load_workload(test::write_temp("w.yaml", text));
  if (!w) ADD_FAILURE() << w.error().str();
  return w ? *w : Workload{};
}

// The error line with the temporary directory cut off.
std::string workload_error(const std::string& text) {
  std::string path = test::write_temp("w.yaml", text);
  auto w = sim::load_workload(path);
  return w ? "(loaded)" : test::relative_error(w.error(), path);
}

// A workload of `n` requests whose input lengths follow `dist` (a flow map body).
std::vector<double> input_samples(const std::string& dist, int n) {
  Workload w = load_text("name: m\nnum_requests: " + std::to_string(n) +
                         "\narrival: {process: closed, concurrency: 1}\ninput_tokens: {" + dist +
                         "}\noutput_tokens: {distribution: fixed, value: 1}\n");
  std::vector<double> v;
  for (const Request& r : w.requests) v.push_back(static_cast<double>(r.input_tokens));
  return v;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

double stddev_of(const std::vector<double>& v) {
  double m = mean_of(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return v.size() < 2 ? 0 : std::sqrt(s / static_cast<double>(v.size() - 1));
}

bool same_requests(const Workload& a, const Workload& b) {
  if (a.requests.size() != b.requests.size()) return false;
  for (std::size_t k = 0; k < a.requests.size(); ++k) {
    const Request &x = a.requests[k], &y = b.requests[k];
    if (x.id != y.id || x.arrival_s != y.arrival_s || x.input_tokens != y.input_tokens ||
        x.output_tokens != y.output_tokens)
      return false;
  }
  return true;
}

void expect_well_formed(const Workload& w) {
  double prev = 0;
  for (std::size_t k = 0; k < w.requests.size(); ++k) {
    const Request& r = w.requests[k];
    EXPECT_EQ(r.id, static_cast<std::int64_t>(k)) << w.name;
    EXPECT_GE(r.arrival_s, prev) << w.name << " request " << k;
    EXPECT_GE(r.input_tokens, 1) << w.name;
    EXPECT_GE(r.output_tokens, 1) << w.name;
    prev = r.arrival_s;
  }
}

TEST(WorkloadCatalog, ShippedWorkloadsLoad) {
  struct Expect {
    const char* name;
    std::size_t requests;
    ArrivalProcess arrival;
  };
  for (Expect e : {Expect{"chat", 1000, ArrivalProcess::kPoisson},
                   Expect{"long-context", 500, ArrivalProcess::kPoisson},
                   Expect{"loop", 64, ArrivalProcess::kClosedLoop},
                   Expect{"offline-batch", 2000, ArrivalProcess::kClosedLoop},
                   Expect{"trace-example", 20, ArrivalProcess::kPoisson}}) {
    auto w = sim::load_workload(e.name);
    ASSERT_TRUE(w) << w.error().str();
    EXPECT_EQ(w->name, e.name);
    EXPECT_EQ(w->requests.size(), e.requests) << e.name;
    EXPECT_EQ(w->arrival, e.arrival) << e.name;
    expect_well_formed(*w);
    auto by_path = sim::load_workload(kRoot + "/workloads/" + e.name + ".yaml");
    ASSERT_TRUE(by_path) << by_path.error().str();
    EXPECT_TRUE(same_requests(*w, *by_path)) << e.name;
  }
  EXPECT_EQ(catalog_entries(Catalog::kWorkloads),
            (std::vector<std::string>{"chat", "long-context", "loop", "offline-batch",
                                       "single-user", "trace-example"}));
}

TEST(WorkloadCatalog, ShippedShapes) {
  auto chat = sim::load_workload("chat");
  ASSERT_TRUE(chat);
  std::vector<double> in, out;
  for (const Request& r : chat->requests) {
    in.push_back(static_cast<double>(r.input_tokens));
    out.push_back(static_cast<double>(r.output_tokens));
  }
  EXPECT_NEAR(mean_of(in), 1000, 100);  // 1000 samples: within 10%
  EXPECT_NEAR(mean_of(out), 250, 25);
  EXPECT_DOUBLE_EQ(chat->rate_per_s, 8.0);
  auto batch = sim::load_workload("offline-batch");
  ASSERT_TRUE(batch);
  EXPECT_EQ(batch->concurrency, 256);
  auto lc = sim::load_workload("long-context");
  ASSERT_TRUE(lc);
  for (const Request& r : lc->requests) EXPECT_GE(r.input_tokens, 2048);
}

TEST(WorkloadGeneration, ArrivalNames) {
  EXPECT_STREQ(sim::arrival_name(ArrivalProcess::kPoisson), "poisson");
  EXPECT_STREQ(sim::arrival_name(ArrivalProcess::kFixedRate), "fixed");
  EXPECT_STREQ(sim::arrival_name(ArrivalProcess::kClosedLoop), "closed");
}

TEST(WorkloadGeneration, Deterministic) {
  Workload a = load_text(kBase), b = load_text(kBase);
  ASSERT_EQ(a.requests.size(), 100u);
  EXPECT_TRUE(same_requests(a, b));
  Workload c = load_text(test::replace(kBase, "seed: 3", "seed: 4"));
  EXPECT_FALSE(same_requests(a, c));
  // Each stream is independent: a different output distribution leaves arrivals and inputs.
  Workload d = load_text(test::replace(kBase, "mean: 200", "mean: 300"));
  for (std::size_t k = 0; k < a.requests.size(); ++k) {
    EXPECT_EQ(a.requests[k].arrival_s, d.requests[k].arrival_s);
    EXPECT_EQ(a.requests[k].input_tokens, d.requests[k].input_tokens);
  }
}

// The standard fixes mt19937_64's sequence (its 10000th output), and these values pin the
// whole pipeline: a change here changes every user's results.
TEST(WorkloadGeneration, PinnedValues) {
  std::mt19937_64 g;
  g.discard(9999);
  EXPECT_EQ(g(), 9981545732273789042ull);
  Workload w = load_text(kBase);
  ASSERT_GE(w.requests.size(), 3u);
  EXPECT_EQ(w.requests[0].arrival_s, 0.0);
  std::vector<std::int64_t> in, out;
  for (int k = 0; k < 3; ++k) {
    in.push_back(w.requests[k].input_tokens);
    out.push_back(w.requests[k].output_tokens);
  }
  EXPECT_EQ(in, (std::vector<std::int64_t>{631, 535, 1087}));
  EXPECT_EQ(out, (std::vector<std::int64_t>{176, 211, 163}));
  EXPECT_EQ(w.requests[1].arrival_s, 0.022538117);  // whole nanoseconds
  EXPECT_EQ(w.requests[2].arrival_s, 0.72488529999999995);
}

TEST(WorkloadGeneration, DistributionMoments) {
  const int n = 20000;
  auto normal = input_samples("distribution: normal, mean: 256, stddev: 64", n);
  EXPECT_NEAR(mean_of(normal), 256, 256 * 0.05);
  EXPECT_NEAR(stddev_of(normal), 64, 64 * 0.05);
  auto logn = input_samples("distribution: lognormal, mean: 1024, stddev: 512", n);
  EXPECT_NEAR(mean_of(logn), 1024, 1024 * 0.05);
  EXPECT_NEAR(stddev_of(logn), 512, 512 * 0.10);  // heavy tail: a looser bound
  auto uni = input_samples("distribution: uniform, min: 100, max: 300", n);
  EXPECT_NEAR(mean_of(uni), 200, 200 * 0.05);
  EXPECT_EQ(*std::min_element(uni.begin(), uni.end()), 100);  // both ends are reached
  EXPECT_EQ(*std::max_element(uni.begin(), uni.end()), 300);
  auto fixed = input_samples("distribution: fixed, value: 77", 10);
  EXPECT_EQ(fixed, std::vector<double>(10, 77));
}

TEST(WorkloadGeneration, ClampedToMinMax) {
  auto v = input_samples("distribution: normal, mean: 100, stddev: 500, min: 50, max: 120", 2000);
  EXPECT_EQ(*std::min_element(v.begin(), v.end()), 50);
  EXPECT_EQ(*std::max_element(v.begin(), v.end()), 120);
  auto d = input_samples("distribution: normal, mean: 3, stddev: 10", 2000);  // min defaults to 1
  EXPECT_EQ(*std::min_element(d.begin(), d.end()), 1);
}

TEST(WorkloadGeneration, FixedRateArrivalsExact) {
  Workload w = load_text(test::replace(kBase, "process: poisson", "process: fixed"));
  EXPECT_EQ(w.arrival, ArrivalProcess::kFixedRate);
  for (const Request& r : w.requests)
    EXPECT_EQ(r.arrival_s, static_cast<double>(r.id) * 0.25);  // 1 / 4, exact in binary
  Workload t = load_text(test::replace(test::replace(kBase, "process: poisson", "process: fixed"),
                                 "rate_per_s: 4", "rate_per_s: 3"));
  for (const Request& r : t.requests) EXPECT_DOUBLE_EQ(r.arrival_s, static_cast<double>(r.id) / 3);
}

TEST(WorkloadGeneration, PoissonGaps) {
  Workload w = load_text(test::replace(test::replace(kBase, "num_requests: 100", "num_requests: 20000"),
                                 "rate_per_s: 4", "rate_per_s: 8"));
  ASSERT_EQ(w.requests.size(), 20000u);
  EXPECT_EQ(w.requests[0].arrival_s, 0.0);
  std::vector<double> gaps;
  for (std::size_t k = 1; k < w.requests.size(); ++k)
    gaps.push_back(w.requests[k].arrival_s - w.requests[k - 1].arrival_s);
  EXPECT_NEAR(mean_of(gaps), 0.125, 0.125 * 0.05);
  EXPECT_NEAR(stddev_of(gaps), 0.125, 0.125 * 0.05);  // exponential: stddev == mean
}

TEST(WorkloadGeneration, ClosedLoop) {
  Workload w = load_text(test::replace(kBase, "  process: poisson\n  rate_per_s: 4\n",
                                 "  process: closed\n  concurrency: 64\n"));
  EXPECT_EQ(w.arrival, ArrivalProcess::kClosedLoop);
  EXPECT_EQ(w.concurrency, 64);
  ASSERT_EQ(w.requests.size(), 100u);
  for (const Request& r : w.requests) EXPECT_EQ(r.arrival_s, 0.0);
}

const char* kTraceYaml = "name: t\ntrace: t.csv\n";

TEST(WorkloadTrace, ShippedTrace) {
  auto w = sim::load_workload("trace-example");
  ASSERT_TRUE(w) << w.error().str();
  ASSERT_EQ(w->requests.size(), 20u);
  EXPECT_EQ(w->requests[0].input_tokens, 812);
  EXPECT_EQ(w->requests[0].output_tokens, 214);
  EXPECT_DOUBLE_EQ(w->requests[19].arrival_s, 3.311);
  EXPECT_DOUBLE_EQ(w->rate_per_s, 19 / 3.311);
  EXPECT_EQ(std::filesystem::path(w->trace).filename(), "trace-example.csv");
}

TEST(WorkloadTrace, HeaderCommentsCapSpacesAndBom) {
  test::write_temp("t.csv", "# recorded 2024-01-01\r\narrival_s, input_tokens, output_tokens\r\n"
                            "\r\n0, 10, 5\r\n0.5,20,6\r\n0.5,30,7\r\n2,40,8\r\n");
  Workload w = load_text(kTraceYaml);
  ASSERT_EQ(w.requests.size(), 4u);
  EXPECT_EQ(w.requests[2].input_tokens, 30);
  EXPECT_EQ(w.requests[3].arrival_s, 2.0);
  EXPECT_DOUBLE_EQ(w.rate_per_s, 1.5);
  Workload capped = load_text(std::string(kTraceYaml) + "num_requests: 2\n");
  ASSERT_EQ(capped.requests.size(), 2u);
  EXPECT_EQ(capped.requests[1].output_tokens, 6);
  test::write_temp("t.csv", "\xEF\xBB\xBF" "arrival_s,input_tokens,output_tokens\n0,1,1\n0,1,1\n");
  Workload bom = load_text(kTraceYaml);  // a byte order mark before the header is skipped
  EXPECT_EQ(bom.requests.size(), 2u);
  EXPECT_EQ(bom.rate_per_s, 0.0);  // all at once
}

// The error for `csv` as the trace of a minimal workload.
std::string trace_error(const std::string& csv) {
  test::write_temp("t.csv", csv);
  return workload_error(kTraceYaml);
}

TEST(WorkloadTrace, BadRows) {
  std::string rows = "arrival_s,input_tokens,output_tokens\n0,10,5\n0.5,20,6\n1,30,7\n1.2,1,1\n"
                     "1.4,2,2\n";
  EXPECT_EQ(trace_error(rows + "1.5,abc,3\n"),
            "t.csv:7:5: error: expected arrival_s,input_tokens,output_tokens as numbers, got "
            "'1.5,abc,3'");
  EXPECT_EQ(trace_error("0,10\n"),
            "t.csv:1:1: error: expected arrival_s,input_tokens,output_tokens as numbers, got "
            "'0,10'");
  EXPECT_EQ(trace_error("0,10,5,1\n"),
            "t.csv:1:1: error: expected arrival_s,input_tokens,output_tokens as numbers, got "
            "'0,10,5,1'");
  EXPECT_EQ(trace_error("0,10,5\nnan,1,1\n"),
            "t.csv:2:1: error: expected arrival_s,input_tokens,output_tokens as numbers, got "
            "'nan,1,1'");
  EXPECT_EQ(trace_error("0,10,2.5\n"),
            "t.csv:1:6: error: expected arrival_s,input_tokens,output_tokens as numbers, got "
            "'0,10,2.5'");
  EXPECT_EQ(trace_error("0,10,5\n1, 0,5\n"),
            "t.csv:2:4: error: input_tokens must be at least 1, got 0");
  EXPECT_EQ(trace_error("0,10,-5\n"), "t.csv:1:6: error: output_tokens must be at least 1, got -5");
  EXPECT_EQ(trace_error("0,2000000,5\n"),
            "t.csv:1:3: error: input_tokens must be at most 1048576, got 2000000");
  EXPECT_EQ(trace_error("-1,10,5\n"), "t.csv:1:1: error: arrival_s must be at least 0, got -1");
  EXPECT_EQ(trace_error("0,1,1\n1.25,1,1\n0.5,1,1\n"),
            "t.csv:3:1: error: arrival_s 0.5 is earlier than the previous row's 1.25 (arrival "
            "times must be non-decreasing)");
  EXPECT_EQ(trace_error("0,1,1\narrival_s,input_tokens,output_tokens\n"),
            "t.csv:2:1: error: expected arrival_s,input_tokens,output_tokens as numbers, got "
            "'arrival_s,input_tokens,output_tokens'");  // a header only on the first line
}

TEST(WorkloadTrace, BadFiles) {
  EXPECT_EQ(workload_error("name: t\ntrace: missing.csv\n"),
            "w.yaml:2:8: error: field 'trace' in workload names 'missing.csv': cannot read "
            "trace file: No such file or directory");
  EXPECT_EQ(trace_error("arrival_s,input_tokens,output_tokens\n# nothing\n"),
            "w.yaml:2:8: error: field 'trace' in workload names 't.csv', which has no rows");
  EXPECT_EQ(workload_error("name: t\ntrace: .\n"),
            "w.yaml:2:8: error: field 'trace' in workload names '.', which is a directory");
  EXPECT_EQ(trace_error("\n \n"), "t.csv:1:1: error: trace file is empty");
  EXPECT_EQ(trace_error(std::string("0,1,1\n\0", 7)),
            "t.csv:2:1: error: trace file is binary (NUL byte at offset 6)");
}

TEST(BadWorkload, ValidBaseLoads) { EXPECT_EQ(workload_error(kBase), "(loaded)"); }

TEST(BadWorkload, Sources) {
  EXPECT_EQ(workload_error("name: w\nnum_requests: 5\n"),
            "w.yaml:1:1: error: workload needs 'arrival', 'input_tokens' and 'output_tokens', "
            "or a 'trace'");
  EXPECT_EQ(workload_error(std::string(kBase) + "trace: t.csv\n"),
            "w.yaml:4:1: error: field 'arrival' in workload cannot be given with 'trace' (the "
            "trace gives arrival times and lengths)");
  EXPECT_EQ(workload_error(std::string(kTraceYaml) + "output_tokens: {distribution: fixed, "
                                                     "value: 3}\n"),
            "w.yaml:3:1: error: field 'output_tokens' in workload cannot be given with 'trace' "
            "(the trace gives arrival times and lengths)");
  EXPECT_EQ(workload_error(test::replace(kBase, "input_tokens", "# input_tokens")),
            "w.yaml:1:1: error: missing required field 'input_tokens' in workload");
  EXPECT_EQ(workload_error(test::replace(kBase, "num_requests: 100\n", "")),
            "w.yaml:1:1: error: missing required field 'num_requests' in workload");
  EXPECT_EQ(workload_error(test::replace(kBase, "name: w\n", "")),
            "w.yaml:1:1: error: missing required field 'name' in workload");
}

TEST(BadWorkload, UnknownKeys) {
  EXPECT_EQ(workload_error(test::replace(kBase, "num_requests", "num_request")),
            "w.yaml:2:1: error: unknown key 'num_request' in workload (did you mean "
            "'num_requests'?)");
  EXPECT_EQ(workload_error(test::replace(kBase, "rate_per_s", "rate_per_sec")),
            "w.yaml:6:3: error: unknown key 'rate_per_sec' in arrival (did you mean "
            "'rate_per_s'?)");
  EXPECT_EQ(workload_error(test::replace(kBase, "rate_per_s", "rate")),
            "w.yaml:5:3: error: missing required field 'rate_per_s' in arrival");
  EXPECT_EQ(workload_error(test::replace(kBase, "stddev: 500", "stdev: 500")),
            "w.yaml:7:53: error: unknown key 'stdev' in input_tokens (did you mean 'stddev'?)");
  EXPECT_EQ(workload_error(std::string(kBase) + "colour: blue\n"),
            "w.yaml:9:1: error: unknown key 'colour' in workload (valid keys: name, seed, trace, "
            "requests, arrival, input_tokens, output_tokens, slo, num_requests)");
  EXPECT_EQ(workload_error(test::replace(kBase, "{distribution: normal, mean: 200, stddev: 50, ",
                                   "{distribution: fixed, value: 5, stddev: 50, ")),
            "w.yaml:8:48: error: unknown key 'stddev' in output_tokens (valid keys: "
            "distribution, value)");
}

TEST(BadWorkload, Distributions) {
  EXPECT_EQ(workload_error(test::replace(kBase, "lognormal", "lognorm")),
            "w.yaml:7:16: error: field 'distribution' in input_tokens is 'lognorm', expected one "
            "of: fixed, uniform, normal, lognormal (did you mean 'lognormal'?)");
  EXPECT_EQ(workload_error(test::replace(kBase, "{distribution: lognormal, mean: 1000, stddev: 500}",
                                   "{distribution: fixed, value: -5}")),
            "w.yaml:7:37: error: field 'value' in input_tokens must be at least 1, got -5");
  EXPECT_EQ(workload_error(test::replace(kBase, "{distribution: lognormal, mean: 1000, stddev: 500}",
                                   "{distribution: fixed, value: 0}")),
            "w.yaml:7:37: error: field 'value' in input_tokens must be at least 1, got 0");
  EXPECT_EQ(workload_error(test::replace(kBase, "min: 1, max: 4096", "min: 300, max: 200")),
            "w.yaml:8:72: error: field 'max' in output_tokens is 200, less than min 300");
  EXPECT_EQ(workload_error(test::replace(kBase, "min: 1,", "min: 0,")),
            "w.yaml:8:62: error: field 'min' in output_tokens must be at least 1, got 0");
  EXPECT_EQ(workload_error(test::replace(kBase, "mean: 1000", "mean: 0")),
            "w.yaml:7:41: error: field 'mean' in input_tokens must be between 1 and 1e+06, got 0");
  EXPECT_EQ(workload_error(test::replace(kBase, "stddev: 500", "stddev: -1")),
            "w.yaml:7:53: error: field 'stddev' in input_tokens must be between 0 and 1e+06, got "
            "-1");
  EXPECT_EQ(workload_error(test::replace(kBase, "{distribution: lognormal, mean: 1000, stddev: 500}",
                                   "{distribution: uniform, min: 5}")),
            "w.yaml:7:15: error: missing required field 'max' in input_tokens");
  EXPECT_EQ(workload_error(test::replace(kBase, "{distribution: lognormal, mean: 1000, stddev: 500}",
                                   "{mean: 5}")),
            "w.yaml:7:15: error: missing required field 'distribution' in input_tokens");
  EXPECT_EQ(workload_error(test::replace(kBase, "{distribution: lognormal, mean: 1000, stddev: 500}",
                                   "512")),
            "w.yaml:7:1: error: field 'input_tokens' in workload must be a map, got '512'");
}

TEST(BadWorkload, ArrivalAndCounts) {
  EXPECT_EQ(workload_error(test::replace(kBase, "rate_per_s: 4", "rate_per_s: 0")),
            "w.yaml:6:3: error: field 'rate_per_s' in arrival must be between 1e-06 and 1e+06, "
            "got 0");
  EXPECT_EQ(workload_error(test::replace(kBase, "rate_per_s: 4", "rate_per_s: -2.5")),
            "w.yaml:6:3: error: field 'rate_per_s' in arrival must be between 1e-06 and 1e+06, "
            "got -2.5");
  EXPECT_EQ(workload_error(test::replace(kBase, "process: poisson", "process: possion")),
            "w.yaml:5:3: error: field 'process' in arrival is 'possion', expected one of: "
            "poisson, fixed, closed (did you mean 'poisson'?)");
  EXPECT_EQ(workload_error(test::replace(kBase, "process: poisson", "process: closed")),
            "w.yaml:6:3: error: field 'rate_per_s' in arrival does not apply to process closed "
            "(it keeps 'concurrency' requests in flight)");
  EXPECT_EQ(workload_error(test::replace(kBase, "rate_per_s: 4", "rate_per_s: 4\n  concurrency: 8")),
            "w.yaml:7:3: error: field 'concurrency' in arrival applies only to process closed");
  EXPECT_EQ(workload_error(test::replace(kBase, "  process: poisson\n  rate_per_s: 4\n",
                                   "  process: closed\n  concurrency: 0\n")),
            "w.yaml:6:3: error: field 'concurrency' in arrival must be at least 1, got 0");
  EXPECT_EQ(workload_error(test::replace(kBase, "num_requests: 100", "num_requests: 0")),
            "w.yaml:2:1: error: field 'num_requests' in workload must be at least 1, got 0");
  EXPECT_EQ(workload_error(test::replace(kBase, "num_requests: 100", "num_requests: 10000001")),
            "w.yaml:2:1: error: field 'num_requests' in workload must be at most 10000000, got "
            "10000001");
  EXPECT_EQ(workload_error(test::replace(kBase, "seed: 3", "seed: -1")),
            "w.yaml:3:1: error: field 'seed' in workload must be at least 0, got -1");
  EXPECT_EQ(workload_error(std::string(kTraceYaml) + "num_requests: 0\n"),
            "w.yaml:3:1: error: field 'num_requests' in workload must be at least 1, got 0");
}

TEST(BadWorkload, FilesAndCatalog) {
  auto w = sim::load_workload("no-such-workload");
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().str(),
            "no-such-workload: error: no such file, and no entry of that name in the workloads "
            "catalog (available: chat, long-context, loop, offline-batch, single-user, "
            "trace-example)");
  EXPECT_EQ(workload_error(""), "w.yaml:1:1: error: YAML file is empty");
  EXPECT_EQ(workload_error("- a\n- b\n"),
            "w.yaml:1:1: error: workload must be a map of fields, got a list (is this a workload file?)");
}

}  // namespace
}  // namespace tpp
