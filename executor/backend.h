// What one rank computes, behind one interface, so that the decoder knows nothing of Eigen,
// CUDA or MPI: GEMM, norms, rotary, activations, paged attention (and MLA's over the latent
// cache), MoE routing, sampling, and (through its Comm) the collectives. A backend knows
// nothing of plans or schedulers. Pointers are the backend's own memory (host memory on the
// CPU); tokens, positions and block tables are host arrays.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "executor/comm.h"
#include "kernels/ops.h"

namespace tpp::exec {

class Backend {
 public:
  explicit Backend(Comm& comm) : comm_(comm) {}
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  Comm& comm() { return comm_; }

  // y[m, n] = x[m, k] . w[n, k]^T (weights row-major [out, in], as PyTorch stores them);
  // accumulate: y += instead of y =.
  virtual void gemm(const float* x, const float* w, float* y, std::int64_t m, std::int64_t n,
                    std::int64_t k, bool accumulate = false) = 0;
  virtual void add_rmsnorm(const float* x, float* residual, const float* w, float* y,
                           std::int64_t rows, std::int64_t cols, float eps) = 0;
  virtual void rope(float* x, const std::int64_t* pos, std::int64_t rows, std::int64_t heads,
                    std::int64_t head_stride, std::int64_t offset, std::int64_t rot,
                    float theta) = 0;
  virtual void silu_mul(const float* gate_up, float* out, std::int64_t rows,
                        std::int64_t inter) = 0;
  virtual void embedding(const std::int64_t* tokens, std::int64_t n, const float* table,
                         std::int64_t vocab0, std::int64_t rows, std::int64_t dim,
                         float* out) = 0;
  virtual void kv_write(const float* k, const float* v, float* k_pool, float* v_pool,
                        const kernels::PagedSeq* seqs, std::int64_t num_seqs, std::int64_t heads,
                        std::int64_t dim, std::int64_t block_size) = 0;
  virtual void paged_attention(const float* q, const float* k_pool, const float* v_pool,
                               const kernels::PagedSeq* seqs, std::int64_t num_seqs,
                               std::int64_t q_heads, std::int64_t kv_heads, std::int64_t dim,
                               std::int64_t block_size, float scale, float* out) = 0;
  virtual void latent_write(const float* latent, float* pool, const kernels::PagedSeq* seqs,
                            std::int64_t num_seqs, std::int64_t width,
                            std::int64_t block_size) = 0;
  virtual void mla_attention(const float* q_lat, const float* q_pe, const float* pool,
                             const kernels::PagedSeq* seqs, std::int64_t num_seqs,
                             std::int64_t heads, std::int64_t lora, std::int64_t rope,
                             std::int64_t block_size, float scale, float* out) = 0;
  virtual void topk_softmax(const float* logits, std::int64_t rows, std::int64_t experts,
                            std::int64_t k, std::int32_t* ids, float* weights) = 0;
  virtual void argmax(const float* x, std::int64_t rows, std::int64_t cols,
                      std::int64_t* out) = 0;

  // Memory the backend owns (the KV pool, weights): uninitialised, so that a pool is only
  // resident as far as it is used. Freed with the backend.
  virtual float* alloc(std::size_t n) = 0;

 private:
  Comm& comm_;
};

// Passes every call to another backend: a wrapper that times or counts some of them overrides
// those (tpp-profile's operator timer, the benchmarks' counter).
class ForwardingBackend : public Backend {
 public:
  ForwardingBackend(Comm& c, Backend& inner) : Backend(c), in_(inner) {}
  std::string name() const override { return in_.name(); }
  void gemm(const float* x, const float* w, float* y, std::int64_t m, std::int64_t n,
            std::int64_t k, bool acc = false) override { in_.gemm(x, w, y, m, n, k, acc); }
  void add_rmsnorm(const float* x, float* r, const float* w, float* y, std::int64_t rows,
                   std::int64_t cols, float eps) override { in_.add_rmsnorm(x, r, w, y, rows, cols, eps); }
  void rope(float* x, const std::int64_t* p, std::int64_t rows, std::int64_t h, std::int64_t st,
            std::int64_t o, std::int64_t rot, float th) override { in_.rope(x, p, rows, h, st, o, rot, th); }
  void silu_mul(const float* g, float* o, std::int64_t r, std::int64_t i) override { in_.silu_mul(g, o, r, i); }
  void embedding(const std::int64_t* t, std::int64_t n, const float* tb, std::int64_t v0,
                 std::int64_t r, std::int64_t d, float* o) override { in_.embedding(t, n, tb, v0, r, d, o); }
  void kv_write(const float* k, const float* v, float* kp, float* vp, const kernels::PagedSeq* s,
                std::int64_t n, std::int64_t h, std::int64_t d, std::int64_t bs) override {
    in_.kv_write(k, v, kp, vp, s, n, h, d, bs);
  }
  void paged_attention(const float* q, const float* kp, const float* vp, const kernels::PagedSeq* s,
                       std::int64_t n, std::int64_t qh, std::int64_t kh, std::int64_t d,
                       std::int64_t bs, float sc, float* o) override {
    in_.paged_attention(q, kp, vp, s, n, qh, kh, d, bs, sc, o);
  }
  void latent_write(const float* l, float* pool, const kernels::PagedSeq* s, std::int64_t n,
                    std::int64_t w, std::int64_t bs) override { in_.latent_write(l, pool, s, n, w, bs); }
  void mla_attention(const float* ql, const float* qp, const float* pool, const kernels::PagedSeq* s,
                     std::int64_t n, std::int64_t h, std::int64_t l, std::int64_t r, std::int64_t bs,
                     float sc, float* o) override {
    in_.mla_attention(ql, qp, pool, s, n, h, l, r, bs, sc, o);
  }
  void topk_softmax(const float* l, std::int64_t r, std::int64_t e, std::int64_t k,
                    std::int32_t* ids, float* w) override { in_.topk_softmax(l, r, e, k, ids, w); }
  void argmax(const float* x, std::int64_t r, std::int64_t c, std::int64_t* o) override { in_.argmax(x, r, c, o); }
  float* alloc(std::size_t n) override { return in_.alloc(n); }

 protected:
  Backend& in_;
};

// Eigen for the GEMMs, the kernels' CPU references for the rest.
std::unique_ptr<Backend> make_cpu_backend(Comm& comm);

}  // namespace tpp::exec
