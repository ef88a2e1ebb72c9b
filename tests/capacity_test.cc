// Capacity planning (tpp-plan --rate-sweep, --target-rate, --target-concurrency,
// --fill-cluster): each answer checked against the others and against a plain run of the split
// it names, through the CLI as a user runs it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_util.h"

namespace tpp {
namespace {

nlohmann::json run_json(const std::string& args) {
  auto r = test::tpp_plan(args + " --format json");
  EXPECT_EQ(r.code, 0) << r.err;
  return r.code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

std::string split(std::int64_t tp, std::int64_t pp, std::int64_t dp) {
  return "--tp " + std::to_string(tp) + " --pp " + std::to_string(pp) + " --dp " + std::to_string(dp);
}

double max_rate(const std::string& split) {
  return run_json("--model llama-3.1-8b --cluster h100x1 " + split + " --rate-sweep")["max_requests_per_s"];
}

// The knee passes, the point just above it (within 2%) fails, and the sweep's points rise.
TEST(Capacity, RateSweepBracketsItsKnee) {
  const auto s = run_json("--model llama-3.1-8b --cluster h100x1 --tp 1 --rate-sweep");
  const double knee = s["max_requests_per_s"];
  ASSERT_GT(knee, 0);
  bool at = false, above = false;
  double last = 0;
  for (const auto& p : s["points"]) {
    const double rate = p["requests_per_s"];
    EXPECT_GT(rate, last);
    last = rate;
    if (rate == knee) at = p["within_slo"];
    if (rate > knee && rate <= knee * 1.021) above = !p["within_slo"].get<bool>();
  }
  EXPECT_TRUE(at);
  EXPECT_TRUE(above) << s.dump(1);
  EXPECT_FALSE(s["limit"].get<std::string>().empty());
}

// The answer's replicas carry the target; one fewer replica of the same split cannot (its own
// rate sweep, through the router, stops short of the target).
TEST(Capacity, TargetRateNeedsTheReplicasItNames) {
  const double target = 40;
  const auto c = run_json("--model llama-3.1-8b --cluster h100x1 --target-rate 40");
  ASSERT_FALSE(c["answer"].is_null());
  const auto& a = c["rows"][c["answer"].get<std::size_t>()];
  const std::int64_t tp = a["tp"], pp = a["pp"], dp = a["dp"];
  EXPECT_GE(a["margin"].get<double>(), 0);
  EXPECT_EQ(a["gpus"].get<std::int64_t>(), tp * pp * dp);
  // No other split serves it on fewer GPUs.
  for (const auto& row : c["rows"])
    if (row["rejected_reason"] == "") EXPECT_GE(row["gpus"].get<std::int64_t>(), a["gpus"].get<std::int64_t>());
  if (dp > 1 && tp * pp * (dp - 1) <= 8)
    EXPECT_LT(max_rate(split(tp, pp, dp - 1)), target);
}

TEST(Capacity, TargetConcurrency) {
  const auto c = run_json("--model llama-3.1-8b --cluster h100x1 --target-concurrency 64");
  ASSERT_FALSE(c["answer"].is_null());
  EXPECT_EQ(c["target_kind"], "concurrency");
  const auto& a = c["rows"][c["answer"].get<std::size_t>()];
  // Its replicas hold at least the target between them, within the SLOs.
  EXPECT_GE(a["per_replica"].get<double>() * a["dp"].get<double>(), 64);
  EXPECT_LE(a["at_target"]["tpot_ms_p99"].get<double>(), 80);
}

// The cluster filled: the answer's routed rate is what its own rate sweep (the same replicas
// behind the same router) finds, and it is the highest of the routed rows.
TEST(Capacity, FillClusterAnswerIsItsOwnSweep) {
  const auto f = run_json("--model llama-3.1-8b --cluster h100x1 --fill-cluster");
  ASSERT_FALSE(f["answer"].is_null());
  const auto& a = f["rows"][f["answer"].get<std::size_t>()];
  const double routed = a["routed_requests_per_s"];
  for (const auto& row : f["rows"])
    if (!row["routed_requests_per_s"].is_null()) EXPECT_LE(row["routed_requests_per_s"].get<double>(), routed);
  EXPECT_NEAR(max_rate(split(a["tp"], a["pp"], a["dp"])), routed, 0.03 * routed);
}

TEST(Capacity, BadRequestsAreOneLine) {
  test::expect_one_line_error(test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --rate-sweep"),
                              "tpp-plan: error: --rate-sweep needs a split: add --tp/--pp/--dp");
  test::expect_one_line_error(test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --target-rate 5 --tp 1"),
                              "tpp-plan: error: --target-rate, --target-concurrency and --fill-cluster "
                              "search the splits; drop --tp/--pp/--dp");
  test::expect_one_line_error(test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --target-rate 0"),
                              "tpp-plan: error: --target-rate must be a positive number of requests/s");
  test::expect_one_line_error(test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --target-rate 5 --fill-cluster"),
                              "tpp-plan: error: give one of --target-rate, --target-concurrency, "
                              "--fill-cluster, --rate-sweep");
  const auto closed = test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --target-rate 5 --workload loop");
  EXPECT_EQ(closed.code, 2);
  EXPECT_NE(closed.err.find("--target-rate needs a workload whose requests arrive at a rate"), std::string::npos)
      << closed.err;
}

}  // namespace
}  // namespace tpp
