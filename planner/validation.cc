#include "planner/validation.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace tpp::planner {

extern const char kValidationBandsJson[];

std::vector<ErrorBand> parse_error_bands(std::string_view json_text) {
  const auto j = nlohmann::json::parse(json_text);
  std::vector<ErrorBand> out;
  for (const auto& b : j.at("bands"))
    out.push_back(ErrorBand{b.at("engine").get<std::string>(), b.at("metric").get<std::string>(),
                            b.at("moe").get<bool>(), b.at("tp").get<std::int64_t>(),
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
  auto find = [&](std::string_view metric, bool same_engine, bool same_moe,
                  std::int64_t want_tp) -> const ErrorBand* {
    for (const auto& b : bands)
      if (b.metric == metric && (b.engine == engine) == same_engine && (!same_moe || b.moe == moe) &&
          b.tp == want_tp)
        return &b;
    return nullptr;
  };
  // Closest first: this engine, class and TP; any TP; then other engines likewise.
  for (bool same_engine : {true, false})
    for (auto [same_moe, want_tp] : {std::pair{true, tp}, std::pair{true, std::int64_t{0}},
                                     std::pair{false, std::int64_t{0}}})
      for (std::string_view metric : metrics)
        if (const ErrorBand* b = find(metric, same_engine, same_moe, want_tp)) return *b;
  return std::nullopt;
}

std::optional<ErrorBand> error_band(std::string_view metric, bool moe, std::int64_t tp,
                                    std::string_view engine) {
  return error_band(std::vector<std::string_view>{metric}, moe, tp, engine);
}

std::string band_text(const std::optional<ErrorBand>& b) {
  if (!b) return "no published case to check it against yet";
  return fmt::format("median error {:+.0f}% (worst {:+.0f}%) on {} {}{} {} case{} ({})",
                     b->median_error_pct, b->worst_error_pct, b->cases,
                     b->moe ? "MoE" : "dense", b->tp > 0 ? fmt::format(" TP{}", b->tp) : "",
                     b->engine, b->cases == 1 ? "" : "s", b->metric);
}

std::string band_text(const std::optional<ErrorBand>& b, bool moe, std::int64_t tp,
                      std::string_view engine) {
  std::string s = band_text(b);
  if (b && (b->engine != engine || b->moe != moe || (b->tp != 0 && b->tp != tp)))
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
          {"cases", b.cases}, {"median_error_pct", b.median_error_pct},
          {"median_abs_error_pct", b.median_abs_error_pct}, {"worst_error_pct", b.worst_error_pct},
          {"text", band_text(b)}};
}
}  // namespace

nlohmann::json headline_bands_json(bool moe, std::int64_t tp) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& h : kHeadlines) {
    const auto b = error_band(h.metrics, moe, tp);
    if (!b) {
      j[h.json_key] = nullptr;
      continue;
    }
    j[h.json_key] = band_json(*b);
    j[h.json_key]["text"] = band_text(b, moe, tp);
  }
  return j;
}

std::string headline_bands_text(bool moe, std::int64_t tp) {
  std::string s = "checked against published runs (docs/validation.md):";
  for (const auto& h : kHeadlines)
    s += fmt::format("\n  {}: {}", h.label, band_text(error_band(h.metrics, moe, tp), moe, tp));
  return s;
}

}  // namespace tpp::planner
