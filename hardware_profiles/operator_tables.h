// Measured operator tables: kernel latencies of one GPU kind under one engine's kernels, by
// shape (GEMMs by m x n x k and dtype; paged decode attention by batch x context; prefill
// attention by batch x prompt length, each per heads / kv heads / head size and KV dtype).
//
// The shipped tables (hardware_profiles/operators/<GPU>/<engine>.json) are converted by
// scripts/aic_convert.py from NVIDIA aiconfigurator's measured tables (Apache-2.0); each file
// names its source, engine version and licence. The step model interpolates in them
// (simulator/step_cost.cc); where a shape is off the grid it interpolates the measured time
// relative to the shape's own roofline time, so that a shape between grid points keeps its own
// FLOPs and bytes, and beyond the grid's ends that ratio is held.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace tpp::hw {

struct OperatorTables {
  // One GEMM dtype: latency_us[n][k][m] over the sorted axes.
  struct GemmGrid {
    std::vector<double> m, n, k;
    std::vector<double> us;  // n-major, then k, then m
    double at(std::size_t in, std::size_t ik, std::size_t im) const {
      return us[(in * k.size() + ik) * m.size() + im];
    }
  };
  // One attention configuration: latency_us[batch][length].
  struct AttentionSeries {
    std::int64_t head_dim = 0, heads = 0, kv_heads = 0;
    std::vector<double> batch, length;
    std::vector<double> us;  // batch-major
    double at(std::size_t ib, std::size_t il) const { return us[ib * length.size() + il]; }
  };

  std::string file;    // where it was read from
  std::string gpu, engine, engine_version;
  std::string device;  // as the measuring run's driver named it ("NVIDIA H100 80GB HBM3")
  std::string source;  // one line: what was measured, from where, under which licence
  std::string from;    // the short form: the package it was converted from
  std::map<std::string, GemmGrid> gemm;  // "bfloat16", "fp8", "fp8_block", ...
  // By KV-cache dtype ("bfloat16", "fp8").
  std::map<std::string, std::vector<AttentionSeries>> attention_decode, attention_prefill;

  // Seconds for x[m,k] . W[k,n] in `dtype`; a negative value where the table has no such dtype.
  // `roofline(m, n, k)` is the shape's ideal time (any unit): the measured time is interpolated
  // as a multiple of it, trilinearly in log m, log n, log k.
  double gemm_s(const std::string& dtype, double m, double n, double k,
                const std::function<double(double, double, double)>& roofline) const;
  // The series for an attention kind (decode or prefill), KV dtype, head size, and the query and
  // KV heads on one GPU: the nearest kv_heads, then the nearest query heads a KV head (log
  // distance); nullptr where no series has this head size and KV dtype.
  const AttentionSeries* attention_series(bool decode, const std::string& kv_dtype,
                                          double head_dim, double heads, double kv_heads) const;
  // Seconds for one attention call of `batch` sequences at `length` (decode: the context each
  // sequence reads; prefill: the prompt length each attends over) in series `s`, bilinearly in
  // log batch and log length (log time); beyond the grid's largest batch or length the time
  // grows in proportion, below its smallest it stays (the kernel's latency); another head count
  // than the series' scales the time by the ratio (decode: KV heads, the bytes; prefill: query
  // heads, the FLOPs).
  static double attention_s(const AttentionSeries& s, bool decode, double heads, double kv_heads,
                            double batch, double length);
};

// The table for `gpu` (a GPU catalog name) under `engine` ("vllm", "trtllm"), looked up in the
// operators catalog (common/data_path.h: $TPP_DATA_DIR/operators/<gpu>/<engine>.json, the
// installed share/tpp/operators, the source tree). nullptr when there is none; an Error naming
// the file and the field when the file is there but malformed. Loaded once a process.
Expected<std::shared_ptr<const OperatorTables>> find_operator_tables(const std::string& gpu,
                                                                     const std::string& engine);
// Reads one file (tests, and find_operator_tables).
Expected<std::shared_ptr<const OperatorTables>> load_operator_tables(const std::string& path);

}  // namespace tpp::hw
