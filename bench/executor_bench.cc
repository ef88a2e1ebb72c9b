// The CPU backend as an engine: one decode step of tiny-llama at batch 32 (each sequence 128
// tokens in), through the executor's decoder on one rank, against the same arithmetic in a
// plain single-process Eigen loop (the floor a CPU engine can reach), and the decoder's GEMM
// throughput against tpp-profile's GEMM of the same shapes.
//   ./build/bench/tpp_bench --benchmark_filter=Decode --benchmark_repetitions=5
//     --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <chrono>
#include <cmath>

#include "executor/backend.h"
#include "executor/comm.h"
#include "executor/decoder.h"
#include "model/load.h"

namespace {

using namespace tpp;

constexpr std::int64_t kBatch = 32, kContext = 128;

// Times and counts the GEMMs it passes on: how fast the decoder's GEMMs run.
class CountingBackend : public exec::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  void gemm(const float* x, const float* w, float* y, std::int64_t m, std::int64_t n,
            std::int64_t k, bool acc) override {
    const auto t0 = std::chrono::steady_clock::now();
    in_.gemm(x, w, y, m, n, k, acc);
    gemm_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    gemm_flops += 2.0 * static_cast<double>(m * n * k);
  }
  void paged_attention(const float* q, const float* kp, const float* vp, std::int64_t qh,
                       std::int64_t kh, std::int64_t d, float sc, float* o) override {
    const auto t0 = std::chrono::steady_clock::now();
    in_.paged_attention(q, kp, vp, qh, kh, d, sc, o);
    attention_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  double gemm_s = 0, gemm_flops = 0, attention_s = 0;
};

struct Setup {
  model::Model m = *model::load_model(std::string(TPP_EXAMPLES) + "/tiny-llama.yaml");
  exec::LocalComm comm;
  std::unique_ptr<exec::Backend> cpu = exec::make_cpu_backend(comm);
  CountingBackend counting{comm, *cpu};
  exec::Decoder dec{m, sim::ParallelConfig{}, exec::Place{}, counting, kBatch * (kContext / 16 + 2), 16};
  exec::Step prefill, decode;
  Setup() {
    dec.load_seeded();
    for (std::int64_t s = 0; s < kBatch; ++s) {
      exec::StepSeq p;
      p.id = s;
      p.new_tokens = kContext;
      p.context = 0;
      for (std::int64_t b = 0; b < kContext / 16 + 1; ++b)
        p.blocks.push_back(static_cast<std::int32_t>(s * (kContext / 16 + 2) + b));
      for (std::int64_t j = 0; j < kContext; ++j) p.tokens.push_back((s * 31 + j) % 1024);
      p.samples = true;
      prefill.seqs.push_back(p);
      exec::StepSeq d = p;
      d.new_tokens = 1;
      d.context = kContext;
      d.tokens = {7};
      decode.seqs.push_back(d);
    }
    exec::StageOut out;
    dec.forward(prefill, nullptr, out, false);  // the cache the decode step reads
  }
};

void BM_DecodeStepTinyLlamaBatch32(benchmark::State& state) {
  Setup s;
  exec::StageOut out;
  s.counting.gemm_s = s.counting.gemm_flops = 0;
  for (auto _ : state) s.dec.forward(s.decode, nullptr, out, false);
  const double in_step = s.counting.gemm_flops / s.counting.gemm_s / 1e9;
  state.counters["gemm_GFLOPs"] = in_step;
  state.counters["gemm_ms_per_step"] = s.counting.gemm_s / static_cast<double>(state.iterations()) * 1e3;
  // The same GEMMs (the layer's four shapes and the LM head at 32 rows) timed alone, back to
  // back, as tpp-profile times its grid: the step's GEMMs against what this machine gives them.
  const std::int64_t shapes[][2] = {{384, 256}, {256, 256}, {1376, 256}, {256, 688}, {1024, 256}};
  std::vector<std::vector<float>> w;
  for (const auto& sh : shapes) w.emplace_back(static_cast<std::size_t>(sh[0] * sh[1]), 0.01f);
  std::vector<float> x(32 * 1376, 0.5f), y(32 * 1376);
  double best = 1e30, flops = 0;
  for (const auto& sh : shapes) flops += 2.0 * 32 * static_cast<double>(sh[0] * sh[1]);
  for (int r = 0; r < 50; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t k = 0; k < w.size(); ++k)
      s.cpu->gemm(x.data(), w[k].data(), y.data(), 32, shapes[k][0], shapes[k][1]);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  state.counters["alone_GFLOPs"] = flops / best / 1e9;
  state.counters["step_over_alone"] = in_step / (flops / best / 1e9);
}
BENCHMARK(BM_DecodeStepTinyLlamaBatch32)->Unit(benchmark::kMillisecond);

// The same arithmetic with nothing around it, written as a single process would: per layer
// RMSNorm, the qkv GEMM, rotary (a precomputed table), attention of each new token's 4-head
// group over its sequence's 129 contiguous cached positions (two matrix products), the o GEMM,
// RMSNorm, gate_up, SiLU-and-mul, down; then the final norm and the LM head.
void BM_DecodeStepEigenLoop(benchmark::State& state) {
  using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const int h = 256, L = 4, q = 256, kv = 64, inter = 688, V = 1024, B = kBatch, ctx = kContext + 1;
  const int heads = 8, kvh = 2, hd = 32, group = heads / kvh;
  // Weights at the decoder's scale (uniform, unit variance out): values stay finite and normal.
  auto w = [](int rows, int cols) -> M { return M::Random(rows, cols) * std::sqrt(3.0f / cols); };
  std::vector<M> wqkv, wo, wgu, wd;
  for (int l = 0; l < L; ++l) {
    wqkv.push_back(w(q + 2 * kv, h));
    wo.push_back(w(h, q));
    wgu.push_back(w(2 * inter, h));
    wd.push_back(w(h, inter));
  }
  M lm = w(V, h), x = M::Random(B, h);
  std::vector<M> kc(L, M::Random(B * ctx, kv)), vc(L, M::Random(B * ctx, kv));
  Eigen::VectorXf cs = Eigen::VectorXf::Random(hd / 2), sn = Eigen::VectorXf::Random(hd / 2);
  for (auto _ : state) {
    M hcur = x;
    for (int l = 0; l < L; ++l) {
      const auto ul = static_cast<std::size_t>(l);
      M n = hcur.array().colwise() / (hcur.rowwise().squaredNorm().array() / h + 1e-6f).sqrt();
      M qkv = n * wqkv[ul].transpose();
      for (int r = 0; r < B; ++r)  // rotary on the 10 q and k heads, neox halves
        for (int hh = 0; hh < heads + kvh; ++hh) {
          float* v = qkv.row(r).data() + hh * hd;
          for (int i = 0; i < hd / 2; ++i) {
            const float a = v[i], b = v[i + hd / 2];
            v[i] = a * cs[i] - b * sn[i];
            v[i + hd / 2] = b * cs[i] + a * sn[i];
          }
        }
      M att(B, q);
      for (int r = 0; r < B; ++r)
        for (int g = 0; g < kvh; ++g) {
          auto K = kc[ul].block(r * ctx, g * hd, ctx, hd);
          auto Vv = vc[ul].block(r * ctx, g * hd, ctx, hd);
          Eigen::Map<M> Q(qkv.row(r).data() + g * group * hd, group, hd);
          M sc = Q * K.transpose();
          for (int k = 0; k < group; ++k) {
            auto row = sc.row(k);
            row = (row.array() - row.maxCoeff()).exp();
            row /= row.sum();
          }
          Eigen::Map<M>(att.row(r).data() + g * group * hd, group, hd).noalias() = sc * Vv;
        }
      hcur.noalias() += att * wo[ul].transpose();
      M n2 = hcur.array().colwise() / (hcur.rowwise().squaredNorm().array() / h + 1e-6f).sqrt();
      M gu = n2 * wgu[ul].transpose();
      M act = gu.leftCols(inter).array() / (1 + (-gu.leftCols(inter).array()).exp()) *
              gu.rightCols(inter).array();
      hcur.noalias() += act * wd[ul].transpose();
    }
    M logits = hcur * lm.transpose();
    benchmark::DoNotOptimize(logits.data());
  }
}
BENCHMARK(BM_DecodeStepEigenLoop)->Unit(benchmark::kMillisecond);

}  // namespace

namespace {

// A prefill step of the same 32 sequences, 128 tokens each (4,096 tokens): GEMM-bound.
void BM_PrefillStepTinyLlama4096Tokens(benchmark::State& state) {
  Setup s;
  exec::StageOut out;
  s.counting.gemm_s = s.counting.gemm_flops = 0;
  for (auto _ : state) s.dec.forward(s.prefill, nullptr, out, false);
  state.counters["gemm_GFLOPs"] = s.counting.gemm_flops / s.counting.gemm_s / 1e9;
  state.counters["gemm_ms"] = s.counting.gemm_s / static_cast<double>(state.iterations()) * 1e3;
  state.counters["attention_ms"] = s.counting.attention_s / static_cast<double>(state.iterations()) * 1e3;
}
BENCHMARK(BM_PrefillStepTinyLlama4096Tokens)->Unit(benchmark::kMillisecond);

}  // namespace
