#include <Eigen/Core>

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
  void add_rmsnorm(const float* x, float* residual, const float* w, float* y, std::int64_t rows,
                   std::int64_t cols, float eps) override {
    kernels::add_rmsnorm_ref(x, residual, w, y, rows, cols, eps);
  }
  void rope(float* x, const std::int64_t* pos, std::int64_t rows, std::int64_t heads,
            std::int64_t head_stride, std::int64_t offset, std::int64_t rot,
            float theta) override {
    kernels::rope_neox_ref(x, pos, rows, heads, head_stride, offset, rot, theta);
  }
  void silu_mul(const float* gate_up, float* out, std::int64_t rows,
                std::int64_t inter) override {
    kernels::silu_mul_ref(gate_up, out, rows, inter);
  }
  void embedding(const std::int64_t* tokens, std::int64_t n, const float* table,
                 std::int64_t vocab0, std::int64_t rows, std::int64_t dim, float* out) override {
    kernels::embedding_ref(tokens, n, table, vocab0, rows, dim, out);
  }
  void kv_write(const float* k, const float* v, float* k_pool, float* v_pool,
                const kernels::PagedSeq* seqs, std::int64_t num_seqs, std::int64_t heads,
                std::int64_t dim, std::int64_t block_size) override {
    kernels::kv_write_ref(k, v, k_pool, v_pool, seqs, num_seqs, heads, dim, block_size);
  }
  void paged_attention(const float* q, const float* k_pool, const float* v_pool,
                       const kernels::PagedSeq* seqs, std::int64_t num_seqs,
                       std::int64_t q_heads, std::int64_t kv_heads, std::int64_t dim,
                       std::int64_t block_size, float scale, float* out) override {
    kernels::paged_attention_ref(q, k_pool, v_pool, seqs, num_seqs, q_heads, kv_heads, dim,
                                 block_size, scale, out);
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
  std::vector<std::unique_ptr<float[]>> blocks_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(Comm& comm) {
  // One thread a rank: mpirun places one rank per core, and a second Eigen thread would only
  // contend with the next rank.
  Eigen::setNbThreads(1);
  return std::make_unique<CpuBackend>(comm);
}

}  // namespace tpp::exec
