// How far tpp's predictions were from published measurements, by kind of case: the error bands
// that scripts/validate.py computes from bench/validation/published.json (docs/validation.md)
// and writes into bench/validation/bands.json, which is compiled in. The planner prints the band
// of each headline figure beside it, so a user sees how far to trust the number.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "simulator/memory.h"

namespace tpp::planner {

struct ErrorBand {
  std::string engine, metric;
  bool moe = false;
  std::int64_t tp = 0;  // 0: every TP size of that kind
  std::vector<std::int64_t> tp_sizes;  // the TP sizes its cases ran with
  std::int64_t cases = 0;
  double median_error_pct = 0, median_abs_error_pct = 0, worst_error_pct = 0;
};

// The compiled-in bands (empty when bands.json has none).
const std::vector<ErrorBand>& error_bands();

// The band for a headline figure (`metric` as the validation cases name it:
// output_tokens_per_s, median_ttft_ms, median_tpot_ms, ...) of a vLLM plan of this kind, the
// closest kind that has cases: the same model class and TP size on this engine, then on any
// engine (the one with most cases); then the class over every TP size, this engine's then any;
// then any class. nullopt when no published case has the metric.
std::optional<ErrorBand> error_band(std::string_view metric, bool moe, std::int64_t tp,
                                    std::string_view engine = "vllm");
// The same over several metrics that measure one figure (median_ttft_ms, then mean_ttft_ms):
// the closest kind of case first, and at each kind the metrics in order.
std::optional<ErrorBand> error_band(const std::vector<std::string_view>& metrics, bool moe,
                                    std::int64_t tp, std::string_view engine = "vllm");

// "median error +20% (worst +44%) on 30 dense TP1 tensorrt-llm cases", or the line for a figure
// with none. When the band is not of the kind asked for (`moe`, `tp`, `engine`), the text says
// that it is the nearest kind with cases.
std::string band_text(const std::optional<ErrorBand>& b);
std::string band_text(const std::optional<ErrorBand>& b, bool moe, std::int64_t tp,
                      std::string_view engine = "vllm");

// The bands of a plan's three headline figures, for the JSON outputs:
// {"output_tokens_per_s": {...} or null, "ttft_ms_p50": ..., "tpot_ms_p50": ...}.
// `engine`: the validation cases' name for the plan's engine (vllm, sglang, tensorrt-llm:
// validation_engine()).
nlohmann::json headline_bands_json(bool moe, std::int64_t tp, std::string_view engine = "vllm");
// The text outputs' lines: "checked against published runs (docs/validation.md):", then one
// indented line a headline figure ("  TPOT p50: median error +6% (worst +7%) on 6 ...").
std::string headline_bands_text(bool moe, std::int64_t tp, std::string_view engine = "vllm");
// "vllm", "sglang" or "tensorrt-llm": how the validation cases name an engine.
const char* validation_engine(sim::Framework f);

// Bands from a bands.json text (for tests); throws nlohmann::json's errors on a bad one.
std::vector<ErrorBand> parse_error_bands(std::string_view json_text);

}  // namespace tpp::planner
