// What one rank computes, behind one interface, so that the decoder knows nothing of Eigen,
// CUDA or MPI: GEMM, norms, rotary, activations, paged attention (and MLA's over the latent
// cache), MoE, sampling, and (through its Comm) the collectives. A backend knows nothing of
// plans or schedulers.
//
// Memory. Every pointer the operators take is the backend's own memory (host memory on the
// CPU, device memory on a GPU), from alloc (float32 activations), alloc_weight (matrices in the
// backend's weight type) or alloc_kv (the KV pool in its cache type). On a GPU a weight or KV
// pointer is a handle: element offsets work (w + i is element i of the buffer, whatever its
// type), but only the backend reads through it. Host data crosses with upload / download.
//
// A step. The decoder hands the batch's host-side description to begin_step once; the
// operators that need tokens, positions, slots, block tables or sample rows read them from
// there (a GPU backend uploads them once, to fixed buffers a captured CUDA graph reads).
// begin_step returns the rows the layers run on: the batch's rows, or more when a GPU backend
// pads a decode batch to the size of a captured graph (vLLM's capture sizes); padding rows
// write no KV and are never sampled.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "executor/comm.h"
#include "kernels/cuda_ops.h"
#include "kernels/ops.h"

namespace tpp::exec {

// One step's batch, host-side. seqs[j].block_table points into the caller's vectors, valid
// until the next begin_step.
struct StepMeta {
  std::int64_t rows = 0;                  // new tokens in the batch
  std::vector<std::int64_t> tokens;       // [rows] (read on the first stage)
  std::vector<std::int64_t> positions;    // [rows]
  std::vector<std::int64_t> slots;        // [rows] each row's KV slot (block x size + offset)
  std::vector<kernels::PagedSeq> seqs;    // each sequence's rows, context and block table
  std::vector<std::int32_t> sample_rows;  // rows whose hidden state is sampled (last stage)
  std::int64_t max_blocks = 0;            // the longest block table
  std::int64_t block_size = 0;
  bool decode_only() const {
    for (const auto& s : seqs)
      if (s.new_tokens != 1) return false;
    return true;
  }
};

// Rotary embedding as a table of inverse frequencies (kernels::rope_inv_freq, or YaRN's
// kernels::yarn_inv_freq) with its attention factor. The decoder keeps one per kind for its
// lifetime; a backend may cache what it derives from one by its address, checked by value (a
// later decoder's Rope may sit at an earlier one's address).
struct Rope {
  std::vector<float> inv_freq;  // rot / 2 values
  float mscale = 1.0f;
  bool neox = true;             // false: GPT-J's interleaved pairs (vLLM's DeepSeek)
};

class Backend {
 public:
  explicit Backend(Comm& comm) : comm_(comm) {}
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  Comm& comm() { return comm_; }

  // ---- Memory: freed with the backend; uninitialised (a pool is resident only as it is used).
  // The decoder first says how much it will take in all, so that a GPU backend makes one
  // device allocation for the weights and one for the KV pool (elements of each kind).
  virtual void reserve(std::size_t weight_elems, std::size_t kv_elems) {
    (void)weight_elems, (void)kv_elems;
  }
  virtual float* alloc(std::size_t n) = 0;
  virtual float* alloc_weight(std::size_t n) = 0;
  virtual float* alloc_kv(std::size_t n) = 0;
  virtual int weight_bytes() const = 0;  // bytes an element of a weight (4 on the CPU)
  virtual int kv_bytes() const = 0;      // bytes an element of the KV pool
  // float32 host values into a buffer of alloc (weight false) or alloc_weight (weight true,
  // converted to the weight type), and back.
  virtual void upload(float* dst, const float* host, std::size_t n, bool weight) = 0;
  virtual void download(float* host, const float* src, std::size_t n, bool weight) = 0;
  // Generates the seeded shard in place (kernels::SeedShard) when the backend can; false: the
  // caller computes it on the host and uploads it.
  virtual bool seed(float* dst, const kernels::SeedShard& s, bool weight) {
    (void)dst, (void)s, (void)weight;
    return false;
  }
  // Within the backend's float32 memory: dst[r, 0..cols) = src[r, 0..cols) with row strides.
  virtual void copy2d(float* dst, std::int64_t dst_ld, const float* src, std::int64_t src_ld,
                      std::int64_t rows, std::int64_t cols) = 0;
  virtual void fill(float* dst, float value, std::size_t n) = 0;
  // Waits for the work issued so far (a no-op where calls are synchronous).
  virtual void sync() {}

  // ---- A step.
  virtual std::int64_t begin_step(const StepMeta& m) = 0;
  // CUDA graphs: replay_layers() launches the graph captured for this step's (padded) size
  // and returns true, and the decoder then issues no layer operators; otherwise the decoder
  // calls capture_begin(), issues the layers' operators, and capture_end() (which, when it
  // captured, launches what it captured). capturing() is true between the two when the
  // operators are being recorded rather than run (host code then must not wait on them).
  virtual bool replay_layers() { return false; }
  virtual void capture_begin() {}
  virtual void capture_end() {}
  virtual bool capturing() const { return false; }

  // ---- Operators.
  // y[m, n] = x[m, k] . w[n, k]^T (weights row-major [out, in], as PyTorch stores them);
  // accumulate: y += instead of y =.
  virtual void gemm(const float* x, const float* w, float* y, std::int64_t m, std::int64_t n,
                    std::int64_t k, bool accumulate = false) = 0;
  // `batch` GEMMs: y_b = x_b . w_b^T, x_b = x + b sx with row stride ldx, w_b = w + b sw
  // (contiguous [n, k]), y_b = y + b sy with row stride ldy (MLA's per-head absorption).
  virtual void gemm_batched(const float* x, std::int64_t ldx, std::int64_t sx, const float* w,
                            std::int64_t sw, float* y, std::int64_t ldy, std::int64_t sy,
                            std::int64_t m, std::int64_t n, std::int64_t k,
                            std::int64_t batch) = 0;
  // Norm weights and biases are float32 buffers of alloc.
  virtual void add_rmsnorm(const float* x, float* residual, const float* w, float* y,
                           std::int64_t rows, std::int64_t cols, float eps) = 0;
  // Rotary at the step's positions (rows of the step).
  virtual void rope(float* x, std::int64_t rows, std::int64_t heads, std::int64_t head_stride,
                    std::int64_t offset, std::int64_t rot, const Rope& r) = 0;
  virtual void silu_mul(const float* gate_up, float* out, std::int64_t rows,
                        std::int64_t inter) = 0;
  // The step's tokens through a vocabulary-parallel table (a weight) holding rows
  // [vocab0, vocab0 + rows); out [step rows, dim].
  virtual void embedding(const float* table, std::int64_t vocab0, std::int64_t rows,
                         std::int64_t dim, float* out) = 0;
  // K and V ([rows, heads, dim]) into the pools at the step's slots.
  virtual void kv_write(const float* k, const float* v, float* k_pool, float* v_pool,
                        std::int64_t heads, std::int64_t dim) = 0;
  virtual void paged_attention(const float* q, const float* k_pool, const float* v_pool,
                               std::int64_t q_heads, std::int64_t kv_heads, std::int64_t dim,
                               float scale, float* out) = 0;
  virtual void latent_write(const float* latent, float* pool, std::int64_t width) = 0;
  virtual void mla_attention(const float* q_lat, const float* q_pe, const float* pool,
                             std::int64_t heads, std::int64_t lora, std::int64_t rope,
                             float scale, float* out) = 0;
  // Mixtral-style experts (vLLM's fused_experts): routing of `router_logits` [rows, experts]
  // (softmax, top k, renormalised), then for the local experts [first, first + local) the
  // routed rows through w13 ([local, 2 inter, h]) and w2 ([local, h, inter]), SiLU-and-mul
  // between, combined by the routing weights into out [rows, h] (overwritten).
  virtual void moe(const float* x, const float* router_logits, std::int64_t rows,
                   std::int64_t h, std::int64_t experts, std::int64_t k, const float* w13,
                   const float* w2, std::int64_t first, std::int64_t local, std::int64_t inter,
                   float* out) = 0;
  virtual void add_bias(float* y, const float* bias, std::int64_t rows, std::int64_t cols) = 0;
  virtual void add_scaled(float* y, const float* x, std::size_t n, float a) = 0;
  virtual void sigmoid_gate(float* y, const float* gate, std::int64_t rows,
                            std::int64_t cols) = 0;
  // dst[i, :] = src[step.sample_rows[i], :]
  virtual void gather_samples(const float* src, std::int64_t cols, float* dst) = 0;
  // Greedy sampling into host memory (the index of each row's largest value, first on ties).
  virtual void argmax(const float* x, std::int64_t rows, std::int64_t cols,
                      std::int64_t* host_out) = 0;

 private:
  Comm& comm_;
};

// Passes every call to another backend: a wrapper that times or counts some of them overrides
// those (tpp-profile's operator timer, the benchmarks' counter).
class ForwardingBackend : public Backend {
 public:
  ForwardingBackend(Comm& c, Backend& inner) : Backend(c), in_(inner) {}
  std::string name() const override { return in_.name(); }
  void reserve(std::size_t w, std::size_t kv) override { in_.reserve(w, kv); }
  float* alloc(std::size_t n) override { return in_.alloc(n); }
  float* alloc_weight(std::size_t n) override { return in_.alloc_weight(n); }
  float* alloc_kv(std::size_t n) override { return in_.alloc_kv(n); }
  int weight_bytes() const override { return in_.weight_bytes(); }
  int kv_bytes() const override { return in_.kv_bytes(); }
  void upload(float* d, const float* h, std::size_t n, bool w) override { in_.upload(d, h, n, w); }
  void download(float* h, const float* s, std::size_t n, bool w) override { in_.download(h, s, n, w); }
  bool seed(float* d, const kernels::SeedShard& s, bool w) override { return in_.seed(d, s, w); }
  void copy2d(float* d, std::int64_t dl, const float* s, std::int64_t sl, std::int64_t r,
              std::int64_t c) override { in_.copy2d(d, dl, s, sl, r, c); }
  void fill(float* d, float v, std::size_t n) override { in_.fill(d, v, n); }
  void sync() override { in_.sync(); }
  std::int64_t begin_step(const StepMeta& m) override { return in_.begin_step(m); }
  bool replay_layers() override { return in_.replay_layers(); }
  void capture_begin() override { in_.capture_begin(); }
  void capture_end() override { in_.capture_end(); }
  bool capturing() const override { return in_.capturing(); }
  void gemm(const float* x, const float* w, float* y, std::int64_t m, std::int64_t n,
            std::int64_t k, bool acc = false) override { in_.gemm(x, w, y, m, n, k, acc); }
  void gemm_batched(const float* x, std::int64_t ldx, std::int64_t sx, const float* w,
                    std::int64_t sw, float* y, std::int64_t ldy, std::int64_t sy, std::int64_t m,
                    std::int64_t n, std::int64_t k, std::int64_t b) override {
    in_.gemm_batched(x, ldx, sx, w, sw, y, ldy, sy, m, n, k, b);
  }
  void add_rmsnorm(const float* x, float* r, const float* w, float* y, std::int64_t rows,
                   std::int64_t cols, float eps) override { in_.add_rmsnorm(x, r, w, y, rows, cols, eps); }
  void rope(float* x, std::int64_t rows, std::int64_t h, std::int64_t st, std::int64_t o,
            std::int64_t rot, const Rope& r) override { in_.rope(x, rows, h, st, o, rot, r); }
  void silu_mul(const float* g, float* o, std::int64_t r, std::int64_t i) override { in_.silu_mul(g, o, r, i); }
  void embedding(const float* t, std::int64_t v0, std::int64_t r, std::int64_t d, float* o) override {
    in_.embedding(t, v0, r, d, o);
  }
  void kv_write(const float* k, const float* v, float* kp, float* vp, std::int64_t h,
                std::int64_t d) override { in_.kv_write(k, v, kp, vp, h, d); }
  void paged_attention(const float* q, const float* kp, const float* vp, std::int64_t qh,
                       std::int64_t kh, std::int64_t d, float sc, float* o) override {
    in_.paged_attention(q, kp, vp, qh, kh, d, sc, o);
  }
  void latent_write(const float* l, float* pool, std::int64_t w) override { in_.latent_write(l, pool, w); }
  void mla_attention(const float* ql, const float* qp, const float* pool, std::int64_t h,
                     std::int64_t l, std::int64_t r, float sc, float* o) override {
    in_.mla_attention(ql, qp, pool, h, l, r, sc, o);
  }
  void moe(const float* x, const float* lg, std::int64_t rows, std::int64_t h, std::int64_t e,
           std::int64_t k, const float* w13, const float* w2, std::int64_t first,
           std::int64_t local, std::int64_t inter, float* out) override {
    in_.moe(x, lg, rows, h, e, k, w13, w2, first, local, inter, out);
  }
  void add_bias(float* y, const float* b, std::int64_t r, std::int64_t c) override { in_.add_bias(y, b, r, c); }
  void add_scaled(float* y, const float* x, std::size_t n, float a) override { in_.add_scaled(y, x, n, a); }
  void sigmoid_gate(float* y, const float* g, std::int64_t r, std::int64_t c) override { in_.sigmoid_gate(y, g, r, c); }
  void gather_samples(const float* s, std::int64_t c, float* d) override { in_.gather_samples(s, c, d); }
  void argmax(const float* x, std::int64_t r, std::int64_t c, std::int64_t* o) override { in_.argmax(x, r, c, o); }

 protected:
  Backend& in_;
};

// Eigen for the GEMMs, the kernels' CPU references for the rest.
std::unique_ptr<Backend> make_cpu_backend(Comm& comm);

// The GPU backend (executor/cuda_backend.cu): cuBLAS GEMMs, the CUDA kernels of kernels/,
// CUDA graphs for decode steps. Null with a one-line reason in `why` when this build has no
// CUDA or no device is present.
struct CudaOptions {
  int device = -1;              // -1: local rank modulo the devices present
  kernels::DType weights = kernels::DType::kBF16;  // kBF16, or kFP8 (Hopper: fp8 GEMMs;
                                                   // Ampere: weight-only fp8, dequantised)
  kernels::DType kv = kernels::DType::kBF16;
  bool enforce_eager = false;   // vLLM's --enforce-eager: no CUDA graphs
  std::int64_t max_rows = 8192; // the most rows a step runs (max_num_batched_tokens)
};
std::unique_ptr<Backend> make_cuda_backend(Comm& comm, const CudaOptions& o, std::string& why);

}  // namespace tpp::exec
