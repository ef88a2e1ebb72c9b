// The validation error bands: the compiled-in table is bench/validation/bands.json as
// scripts/validate.py wrote it, the lookup takes the closest kind of case, and the planner's
// outputs carry the bands of their headline figures.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "planner/validation.h"

namespace tpp {
namespace {

using planner::ErrorBand;

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ValidationBands, CompiledInBandsAreTheFileOnDisk) {
  const auto on_disk = planner::parse_error_bands(read(TPP_BANDS_JSON));
  const auto& compiled = planner::error_bands();
  ASSERT_EQ(on_disk.size(), compiled.size());
  ASSERT_FALSE(compiled.empty());
  for (std::size_t k = 0; k < compiled.size(); ++k) {
    EXPECT_EQ(on_disk[k].engine, compiled[k].engine);
    EXPECT_EQ(on_disk[k].metric, compiled[k].metric);
    EXPECT_EQ(on_disk[k].tp, compiled[k].tp);
    EXPECT_EQ(on_disk[k].cases, compiled[k].cases);
    EXPECT_DOUBLE_EQ(on_disk[k].median_error_pct, compiled[k].median_error_pct);
  }
}

// TensorRT-LLM's throughput cases are dense, at TP1, TP2 and TP8 (bench/validation/published.json):
// a dense TP2 plan finds the TP2 band; a TP4 one, of which there are no cases, the band over
// every TP size, whose count is the sum of the per-size bands'.
TEST(ValidationBands, ClosestKindFirst) {
  auto tp2 = planner::error_band("output_tokens_per_s", false, 2, "tensorrt-llm");
  ASSERT_TRUE(tp2);
  EXPECT_EQ(tp2->tp, 2);
  EXPECT_EQ(tp2->engine, "tensorrt-llm");
  auto tp4 = planner::error_band("output_tokens_per_s", false, 4, "tensorrt-llm");
  ASSERT_TRUE(tp4);
  EXPECT_EQ(tp4->tp, 0);
  std::int64_t sum = 0;
  for (const auto& b : planner::error_bands())
    if (b.engine == "tensorrt-llm" && b.metric == "output_tokens_per_s" && !b.moe && b.tp > 0)
      sum += b.cases;
  EXPECT_EQ(tp4->cases, sum);
  EXPECT_GT(tp4->cases, tp2->cases);
  // No such metric anywhere.
  EXPECT_FALSE(planner::error_band("no_such_metric", false, 1));
}

TEST(ValidationBands, TextSaysWhenTheBandIsOfAnotherKind) {
  ErrorBand b{"tensorrt-llm", "output_tokens_per_s", false, 2, {2}, 10, 7.2, 7.2, 22.2};
  const std::string same = planner::band_text(b, false, 2, "tensorrt-llm");
  EXPECT_EQ(same, "median error +7% (worst +22%) on 10 dense TP2 tensorrt-llm cases "
                  "(output_tokens_per_s)");
  const std::string other = planner::band_text(b, true, 8, "vllm");
  EXPECT_NE(other.find("none yet of a MoE TP8 vllm plan"), std::string::npos) << other;
  EXPECT_EQ(planner::band_text(std::nullopt), "no published case to check it against yet");
  // A band over every TP size names the sizes it has, and a plan of another size is told.
  ErrorBand all{"vllm", "mean_tpot_ms", true, 0, {1, 2}, 5, -20, 20, -21};
  EXPECT_EQ(planner::band_text(all, true, 2, "vllm"),
            "median error -20% (worst -21%) on 5 MoE TP1 and TP2 vllm cases (mean_tpot_ms)");
  EXPECT_NE(planner::band_text(all, true, 8, "vllm").find("none yet of a MoE TP8 vllm plan"),
            std::string::npos);
}

TEST(ValidationBands, HeadlineJsonHasTheThreeFigures) {
  const nlohmann::json j = planner::headline_bands_json(false, 2);
  for (const char* k : {"output_tokens_per_s", "ttft_ms_p50", "tpot_ms_p50"}) {
    ASSERT_TRUE(j.contains(k)) << k;
    if (!j[k].is_null()) {
      EXPECT_GT(j[k]["cases"].get<int>(), 0);
      EXPECT_FALSE(j[k]["text"].get<std::string>().empty());
    }
  }
  EXPECT_FALSE(j["output_tokens_per_s"].is_null());
}

TEST(ValidationBands, BadFileIsAnError) {
  EXPECT_ANY_THROW(planner::parse_error_bands("{\"bands\": [{\"engine\": 1}]}"));
  EXPECT_ANY_THROW(planner::parse_error_bands("not json"));
  EXPECT_TRUE(planner::parse_error_bands("{\"bands\": []}").empty());
}

}  // namespace
}  // namespace tpp
