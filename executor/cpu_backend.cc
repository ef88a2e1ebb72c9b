#include <Eigen/Core>

#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "executor/backend.h"

namespace tpp::exec {
namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<RowMajor>;
using ConstMap = Eigen::Map<const RowMajor>;

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(Comm& comm) : Backend(comm) {}
  std::string name() const override { return "cpu"; }

  void gemm(const float* x, const float* w, float* y, std::int64_t m, std::int64_t n,
            std::int64_t k, bool accumulate) override {
    ConstMap X(x, m, k), W(w, n, k);
    Map Y(y, m, n);
    if (accumulate)
      Y.noalias() += X * W.transpose();
    else
      Y.noalias() = X * W.transpose();
  }
  // RMSNorm with the fused residual add, vectorised (sums in float; the reference sums in
  // double: they agree to about 1e-7 relative).
  void add_rmsnorm(const float* x, float* residual, const float* w, float* y, std::int64_t rows,
                   std::int64_t cols, float eps) override {
    Eigen::Map<const Eigen::ArrayXf> W(w, cols);
    for (std::int64_t r = 0; r < rows; ++r) {
      Eigen::Map<const Eigen::ArrayXf> X(x + r * cols, cols);
      Eigen::Map<Eigen::ArrayXf> Y(y + r * cols, cols);
      if (residual) {
        Eigen::Map<Eigen::ArrayXf> R(residual + r * cols, cols);
        R += X;
        Y = R * (1.0f / std::sqrt(R.square().sum() / static_cast<float>(cols) + eps)) * W;
      } else {
        const float inv = 1.0f / std::sqrt(X.square().sum() / static_cast<float>(cols) + eps);
        Y = X * inv * W;
      }
    }
  }
  // Rotary with the cos/sin of each position computed once and kept (positions recur every
  // step); the same angles as the reference.
  void rope(float* x, const std::int64_t* pos, std::int64_t rows, std::int64_t heads,
            std::int64_t head_stride, std::int64_t offset, std::int64_t rot,
            float theta) override {
    const std::int64_t half = rot / 2;
    Table& t = table(half, theta);
    for (std::int64_t r = 0; r < rows; ++r) {
      grow(t, pos[r]);
      const float* cs = t.cos.data() + pos[r] * half;
      const float* sn = t.sin.data() + pos[r] * half;
      for (std::int64_t h = 0; h < heads; ++h) {
        float* v = x + (r * heads + h) * head_stride + offset;
        for (std::int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * cs[i] - b * sn[i];
          v[i + half] = b * cs[i] + a * sn[i];
        }
      }
    }
  }
  void silu_mul(const float* gate_up, float* out, std::int64_t rows,
                std::int64_t inter) override {
    for (std::int64_t r = 0; r < rows; ++r) {
      Eigen::Map<const Eigen::ArrayXf> G(gate_up + r * 2 * inter, inter);
      Eigen::Map<const Eigen::ArrayXf> U(gate_up + r * 2 * inter + inter, inter);
      Eigen::Map<Eigen::ArrayXf>(out + r * inter, inter) = G / (1.0f + (-G).exp()) * U;
    }
  }
  void embedding(const std::int64_t* tokens, std::int64_t n, const float* table,
                 std::int64_t vocab0, std::int64_t rows, std::int64_t dim, float* out) override {
    kernels::embedding_ref(tokens, n, table, vocab0, rows, dim, out);
  }
  // The reference's arithmetic, vectorised: for each sequence and KV head, its cached K and V
  // gathered once (a block's rows of one head are contiguous in the pool), then per chunk of
  // query tokens one matrix product for the scores of the heads that share the KV head over
  // the positions the chunk may see, a softmax over each row's own positions, and one product
  // for the values.
  void kv_write(const float* k, const float* v, float* k_pool, float* v_pool,
                const kernels::PagedSeq* seqs, std::int64_t num_seqs, std::int64_t heads,
                std::int64_t dim, std::int64_t block_size) override {
    kernels::kv_write_ref(k, v, k_pool, v_pool, seqs, num_seqs, heads, dim, block_size);
  }
  void paged_attention(const float* q, const float* k_pool, const float* v_pool,
                       const kernels::PagedSeq* seqs, std::int64_t num_seqs,
                       std::int64_t q_heads, std::int64_t kv_heads, std::int64_t dim,
                       std::int64_t block_size, float scale, float* out) override {
    constexpr std::int64_t kChunk = 64;  // query tokens at a time: scores stay in cache
    const std::int64_t group = q_heads / kv_heads;
    for (std::int64_t s = 0; s < num_seqs; ++s) {
      const kernels::PagedSeq& sq = seqs[s];
      const std::int64_t total = sq.context + sq.new_tokens;
      const std::int64_t nblocks = (total + block_size - 1) / block_size;
      K_.resize(nblocks * block_size, dim);
      V_.resize(nblocks * block_size, dim);
      for (std::int64_t kvh = 0; kvh < kv_heads; ++kvh) {
        for (std::int64_t b = 0; b < nblocks; ++b) {
          const std::int64_t at =
              kernels::kv_offset(sq.block_table[b], kvh, 0, kv_heads, dim, block_size);
          const auto bytes = static_cast<std::size_t>(block_size * dim) * sizeof(float);
          std::memcpy(K_.row(b * block_size).data(), k_pool + at, bytes);
          std::memcpy(V_.row(b * block_size).data(), v_pool + at, bytes);
        }
        for (std::int64_t i0 = 0; i0 < sq.new_tokens; i0 += kChunk) {
          const std::int64_t n = std::min(kChunk, sq.new_tokens - i0);
          const std::int64_t seen = sq.context + i0 + n;  // the chunk's last row sees 0..seen-1
          Q_.resize(n * group, dim);
          for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t g = 0; g < group; ++g)
              std::memcpy(Q_.row(i * group + g).data(),
                          q + ((sq.row0 + i0 + i) * q_heads + kvh * group + g) * dim,
                          static_cast<std::size_t>(dim) * sizeof(float));
          S_.noalias() = (Q_ * K_.topRows(seen).transpose()) * scale;
          for (std::int64_t r = 0; r < n * group; ++r) {
            const std::int64_t last = sq.context + i0 + r / group;  // causal: 0..last
            // A softmax over the positions the row may see; the rest weigh 0 (an exp of -inf
            // would be exact too, but takes a slow path twenty times the cost).
            auto row = S_.row(r).head(last + 1);
            row = (row.array() - row.maxCoeff()).exp();
            row /= row.sum();
            if (last + 1 < seen) S_.row(r).tail(seen - last - 1).setZero();
          }
          O_.noalias() = S_ * V_.topRows(seen);
          for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t g = 0; g < group; ++g)
              std::memcpy(out + ((sq.row0 + i0 + i) * q_heads + kvh * group + g) * dim,
                          O_.row(i * group + g).data(),
                          static_cast<std::size_t>(dim) * sizeof(float));
        }
      }
    }
  }
  void latent_write(const float* latent, float* pool, const kernels::PagedSeq* seqs,
                    std::int64_t num_seqs, std::int64_t width, std::int64_t block_size) override {
    kernels::latent_write_ref(latent, pool, seqs, num_seqs, width, block_size);
  }
  void mla_attention(const float* q_lat, const float* q_pe, const float* pool,
                     const kernels::PagedSeq* seqs, std::int64_t num_seqs, std::int64_t heads,
                     std::int64_t lora, std::int64_t rope, std::int64_t block_size, float scale,
                     float* out) override {
    kernels::mla_attention_ref(q_lat, q_pe, pool, seqs, num_seqs, heads, lora, rope, block_size,
                               scale, out);
  }
  void topk_softmax(const float* logits, std::int64_t rows, std::int64_t experts,
                    std::int64_t k, std::int32_t* ids, float* weights) override {
    kernels::topk_softmax_ref(logits, rows, experts, k, ids, weights);
  }
  void argmax(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t* out) override {
    kernels::argmax_ref(x, rows, cols, out);
  }
  float* alloc(std::size_t n) override {
    blocks_.emplace_back(new float[n]);  // uninitialised: untouched pages are never resident
    return blocks_.back().get();
  }

 private:
  struct Table {
    std::int64_t half = 0;
    float theta = 0;
    std::vector<float> cos, sin;  // [position][half]
  };
  Table& table(std::int64_t half, float theta) {
    for (auto& t : tables_)
      if (t.half == half && t.theta == theta) return t;
    tables_.push_back({half, theta, {}, {}});
    return tables_.back();
  }
  static void grow(Table& t, std::int64_t pos) {
    const auto have = static_cast<std::int64_t>(t.cos.size()) / std::max<std::int64_t>(1, t.half);
    if (pos < have) return;
    const std::int64_t want = std::max<std::int64_t>(pos + 1, 2 * have);
    t.cos.resize(static_cast<std::size_t>(want * t.half));
    t.sin.resize(static_cast<std::size_t>(want * t.half));
    for (std::int64_t p = have; p < want; ++p)
      for (std::int64_t i = 0; i < t.half; ++i) {  // as kernels::rope_neox_ref computes them
        const double a = static_cast<double>(p) *
                         std::pow(static_cast<double>(t.theta), -2.0 * static_cast<double>(i) /
                                                                   static_cast<double>(2 * t.half));
        t.cos[static_cast<std::size_t>(p * t.half + i)] = static_cast<float>(std::cos(a));
        t.sin[static_cast<std::size_t>(p * t.half + i)] = static_cast<float>(std::sin(a));
      }
  }

  std::vector<std::unique_ptr<float[]>> blocks_;
  std::deque<Table> tables_;
  RowMajor K_, V_, Q_, S_, O_;  // attention scratch
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(Comm& comm) {
  // One thread a rank: mpirun places one rank per core, and a second Eigen thread would only
  // contend with the next rank.
  Eigen::setNbThreads(1);
  return std::make_unique<CpuBackend>(comm);
}

}  // namespace tpp::exec
