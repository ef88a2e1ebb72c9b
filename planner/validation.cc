#include "planner/validation.h"

#include <fmt/format.h>

#include <algorithm>

#include <nlohmann/json.hpp>

namespace tpp::planner {

extern const char kValidationBandsJson[];

std::vector<ErrorBand> parse_error_bands(std::string_view json_text) {
  const auto j = nlohmann::json::parse(json_text);
  std::vector<ErrorBand> out;
  for (const auto& b : j.at("bands"))
    out.push_back(ErrorBand{b.at("engine").get<std::string>(), b.at("metric").get<std::string>(),
                            b.at("moe").get<bool>(), b.at("tp").get<std::int64_t>(),
                            b.value("tp_sizes", std::vector<std::int64_t>{}),
                            b.at("cases").get<std::int64_t>(), b.at("median_error_pct").get<double>(),
                            b.at("median_abs_error_pct").get<double>(),
                            b.at("worst_error_pct").get<double>()});
  return out;
}

const std::vector<ErrorBand>& error_bands() {
  static const std::vector<ErrorBand> bands = parse_error_bands(kValidationBandsJson);
  return bands;
}

std::optional<ErrorBand> error_band(const std::vector<std::string_view>& metrics, bool moe,
                                    std::int64_t tp, std::string_view engine) {
  const auto& bands = error_bands();
  // The band with most cases among those of `metric` and this size (want_tp, or 0: a band over
  // every size), of this engine or any, of this class or any. A level that allows any engine
  // comes after the same level for this engine, which would have found this engine's band.
  auto find = [&](std::string_view metric, bool same_engine, bool same_moe,
                  std::int64_t want_tp) -> const ErrorBand* {
    const ErrorBand* found = nullptr;
    for (const auto& b : bands)
      if (b.metric == metric && (!same_engine || b.engine == engine) &&
          (!same_moe || b.moe == moe) && b.tp == want_tp && (!found || b.cases > found->cases))
        found = &b;
    return found;
  };
  // Closest first: the model class and TP size matter more than the engine (the same model at
  // the same split on another engine says more than another model at another split).
  struct Level {
    bool same_engine, same_moe, same_tp;
  };
  for (Level l : {Level{true, true, true}, Level{false, true, true}, Level{true, true, false},
                  Level{false, true, false}, Level{true, false, false}, Level{false, false, false}})
    for (std::string_view metric : metrics)
      if (const ErrorBand* b = find(metric, l.same_engine, l.same_moe, l.same_tp ? tp : 0))
        return *b;
  return std::nullopt;
}

std::optional<ErrorBand> error_band(std::string_view metric, bool moe, std::int64_t tp,
                                    std::string_view engine) {
  return error_band(std::vector<std::string_view>{metric}, moe, tp, engine);
}

std::string band_text(const std::optional<ErrorBand>& b) {
  if (!b) return "no published case to check it against yet";
  // "TP2", or for a band over every size the sizes it has: "TP1 and TP2".
  std::string tp;
  if (b->tp > 0) {
    tp = fmt::format(" TP{}", b->tp);
  } else if (!b->tp_sizes.empty()) {
    for (std::size_t k = 0; k < b->tp_sizes.size(); ++k)
      tp += fmt::format("{}TP{}", k == 0 ? " " : k + 1 == b->tp_sizes.size() ? " and " : ", ",
                        b->tp_sizes[k]);
  }
  return fmt::format("median error {:+.0f}% (worst {:+.0f}%) on {} {}{} {} case{} ({})",
                     b->median_error_pct, b->worst_error_pct, b->cases,
                     b->moe ? "MoE" : "dense", tp, b->engine, b->cases == 1 ? "" : "s", b->metric);
}

std::string band_text(const std::optional<ErrorBand>& b, bool moe, std::int64_t tp,
                      std::string_view engine) {
  std::string s = band_text(b);
  const bool has_tp = b && (b->tp == tp || (b->tp == 0 && std::find(b->tp_sizes.begin(),
                                                                      b->tp_sizes.end(), tp) !=
                                                            b->tp_sizes.end()));
  if (b && (b->engine != engine || b->moe != moe || !has_tp))
    s += fmt::format(" (none yet of a {} TP{} {} plan: the nearest kind with cases)",
                     moe ? "MoE" : "dense", tp, engine);
  return s;
}

namespace {
struct Headline {
  const char* json_key;
  std::vector<std::string_view> metrics;  // as the validation cases name them, closest first
  const char* label;
};
// A throughput's relative error is the same per GPU or for the whole system; a mean is the
// nearest measurement of a median where a case gives only the mean.
const Headline kHeadlines[] = {
    {"output_tokens_per_s", {"output_tokens_per_s", "output_tokens_per_s_per_gpu"}, "throughput"},
    {"ttft_ms_p50", {"median_ttft_ms", "mean_ttft_ms"}, "TTFT p50"},
    {"tpot_ms_p50", {"median_tpot_ms", "mean_tpot_ms"}, "TPOT p50"}};

nlohmann::json band_json(const ErrorBand& b) {
  return {{"engine", b.engine}, {"metric", b.metric}, {"moe", b.moe}, {"tp", b.tp},
          {"tp_sizes", b.tp_sizes},
          {"cases", b.cases}, {"median_error_pct", b.median_error_pct},
          {"median_abs_error_pct", b.median_abs_error_pct}, {"worst_error_pct", b.worst_error_pct},
          {"text", band_text(b)}};
}
}  // namespace

const char* validation_engine(sim::Framework f) {
  return f == sim::Framework::kSglang ? "sglang" : f == sim::Framework::kTrtllm ? "tensorrt-llm" : "vllm";
}

nlohmann::json headline_bands_json(bool moe, std::int64_t tp, std::string_view engine) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& h : kHeadlines) {
    const auto b = error_band(h.metrics, moe, tp, engine);
    if (!b) {
      j[h.json_key] = nullptr;
      continue;
    }
    j[h.json_key] = band_json(*b);
    j[h.json_key]["text"] = band_text(b, moe, tp, engine);
  }
  return j;
}

std::string headline_bands_text(bool moe, std::int64_t tp, std::string_view engine) {
  std::string s = "checked against published runs (docs/validation.md):";
  for (const auto& h : kHeadlines)
    s += fmt::format("\n  {}: {}", h.label, band_text(error_band(h.metrics, moe, tp, engine), moe, tp, engine));
  return s;
}

}  // namespace tpp::planner
