// The decoder's operators as CUDA kernels: device pointers, float32 activations, weights in
// the backend's weight type (bf16, or fp8 e4m3 with a per-tensor scale), one stream per call.
// Each kernel's definition is its CPU reference in kernels/ops.h; tests/kernels_test.cc and
// tests/kernels_attention_test.cc compare the two where a GPU is present (skipped, visibly,
// where none is). This header needs no CUDA headers: it can be included by any C++ file.
//
// Leaves: nothing of the project but this folder is included.
#pragma once

#include <cstdint>

#include "kernels/check.h"

struct CUstream_st;

namespace tpp::kernels {

using Stream = CUstream_st*;  // cudaStream_t; nullptr is the default stream
using bf16_t = std::uint16_t;  // bfloat16's bits (the upper half of a float32)
using fp8_t = std::uint8_t;    // float8 e4m3 (OCP, NVIDIA's __nv_fp8_e4m3)

enum class DType { kF32, kBF16, kFP8 };
inline int dtype_bytes(DType t) { return t == DType::kF32 ? 4 : t == DType::kBF16 ? 2 : 1; }

// ---- Conversions (kernels/convert.cu) ------------------------------------------------------
// Round to nearest even, as __float2bfloat16_rn; fp8 saturating (__nv_cvt_float_to_fp8, SATFINITE).
KernelStatus f32_to_bf16_cuda(const float* x, bf16_t* y, std::int64_t n, Stream s);
KernelStatus bf16_to_f32_cuda(const bf16_t* x, float* y, std::int64_t n, Stream s);
// y = fp8(x / scale)
KernelStatus f32_to_fp8_cuda(const float* x, fp8_t* y, std::int64_t n, float scale, Stream s);
// y = bf16(fp8 x * scale): weight-only fp8 on GPUs without fp8 tensor cores (Ampere).
KernelStatus fp8_to_bf16_cuda(const fp8_t* x, bf16_t* y, std::int64_t n, float scale, Stream s);
KernelStatus fp8_to_f32_cuda(const fp8_t* x, float* y, std::int64_t n, float scale, Stream s);
// *out = max |x| (one float on the device), for a per-tensor fp8 scale (vLLM's dynamic scale).
KernelStatus absmax_cuda(const float* x, std::int64_t n, float* out, Stream s);
// vLLM's dynamic per-tensor fp8 quantisation without a trip to the host: the scale
// s = *amax / 448 (1 when *amax is 0 or not finite) is written to *scale_out, y = fp8(x / s).
// Reference: quantize_fp8_dynamic_ref (ops.h).
KernelStatus quantize_fp8_dynamic_cuda(const float* x, std::int64_t n, const float* amax,
                                       fp8_t* y, float* scale_out, Stream s);
// y[0..n) = v (reference: std::fill).
KernelStatus fill_cuda(float* y, std::int64_t n, float v, Stream s);

// ---- Seeded weights generated on the device (kernels/seeded.cu) ---------------------------
// The same values as the CPU generator (kernels/seeded.h, used by executor/weights.cc): element
// (e, r, c) of the shard is the unsharded tensor's element (expert0 + e, row0 + r, col0 + c).
struct SeedShard {
  std::uint64_t name_hash = 0;
  float scale = 0;           // uniform in +-scale
  bool ones = false;         // norm weights: every element 1
  std::int64_t count = 1, rows = 0, cols = 0;        // the shard's shape
  std::int64_t row0 = 0, col0 = 0, expert0 = 0;      // where it starts in the global tensor
  std::int64_t global_rows = 0;                      // rows of the real tensor (past: padding, 0)
  std::int64_t tensor_rows = 0, tensor_cols = 0;     // the unsharded tensor's row / column count
};
// dst holds count x rows x cols elements of type t (fp8: value / fp8_scale).
KernelStatus seeded_fill_cuda(const SeedShard& sh, DType t, void* dst, float fp8_scale, Stream s);

// ---- Element-wise and small operators (kernels/elementwise.cu) ----------------------------
// Vocabulary-parallel embedding from a table in type t; tokens outside [vocab0, vocab0 + rows)
// give zero rows.
KernelStatus embedding_cuda(const std::int64_t* tokens, std::int64_t n, const void* table,
                            DType t, float table_scale, std::int64_t vocab0, std::int64_t rows,
                            std::int64_t dim, float* out, Stream s);
// vLLM's fused_add_rms_norm (residual may be null; x may equal y).
KernelStatus add_rmsnorm_cuda(const float* x, float* residual, const float* w, float* y,
                              std::int64_t rows, std::int64_t cols, float eps, Stream s);
// Rotary, NeoX style, from a table of inverse frequencies (half = rot / 2 of them): the angle of
// element i at position p is p x inv_freq[i]; cos and sin are multiplied by mscale (YaRN's
// attention factor; 1 otherwise). See rope_ref and yarn_inv_freq in ops.h.
// neox false: GPT-J's interleaved pairs (2i, 2i + 1), as vLLM runs DeepSeek's MLA rope.
KernelStatus rope_cuda(float* x, const std::int64_t* pos, std::int64_t rows, std::int64_t heads,
                       std::int64_t head_stride, std::int64_t offset, std::int64_t rot,
                       const float* inv_freq, float mscale, bool neox, Stream s);
KernelStatus silu_mul_cuda(const float* gate_up, float* out, std::int64_t rows,
                           std::int64_t inter, Stream s);
// y[r, c] += bias[c]
KernelStatus add_bias_cuda(float* y, const float* bias, std::int64_t rows, std::int64_t cols,
                           Stream s);
// y[i] += a x[i]
KernelStatus add_scaled_cuda(float* y, const float* x, std::int64_t n, float a, Stream s);
// y[r, :] *= sigmoid(gate[r])
KernelStatus sigmoid_gate_cuda(float* y, const float* gate, std::int64_t rows, std::int64_t cols,
                               Stream s);
// dst[i, :] = src[index[i], :]
KernelStatus gather_rows_cuda(const float* src, const std::int32_t* index, std::int64_t n,
                              std::int64_t cols, float* dst, Stream s);
// out[r] = the first index of row r's largest value.
KernelStatus argmax_cuda(const float* x, std::int64_t rows, std::int64_t cols,
                         std::int64_t* out, Stream s);

// ---- MoE (kernels/moe.cu) -----------------------------------------------------------------
// Mixtral's routing (vLLM's topk_softmax with renormalize).
KernelStatus topk_softmax_cuda(const float* logits, std::int64_t rows, std::int64_t experts,
                               std::int64_t k, std::int32_t* ids, float* weights, Stream s);
// The permutation into grouped expert GEMMs (vLLM's moe_align without block padding): the
// (row, slot) pairs routed to the local experts [first, first + local), grouped by expert in
// ascending order, and within an expert by row. offsets[local + 1] (offsets[0] = 0, the last =
// the pairs kept); src_row[i] the batch row of pair i; where[r * k + j] = the pair's index, or
// -1 when its expert is not local. All arrays on the device, sized rows x k (offsets local + 1).
KernelStatus moe_permute_cuda(const std::int32_t* ids, std::int64_t rows, std::int64_t k,
                              std::int64_t first, std::int64_t local, std::int32_t* offsets,
                              std::int32_t* src_row, std::int32_t* where, Stream s);
// out[r, :] = sum over j with where[r * k + j] >= 0 of weights[r * k + j] x y[where[...], :]
// (overwrites out; deterministic: no atomics).
KernelStatus moe_combine_cuda(const float* y, const std::int32_t* where, const float* weights,
                              std::int64_t rows, std::int64_t k, std::int64_t cols, float* out,
                              Stream s);

// ---- Paged KV cache and attention (kernels/attention.cu) ----------------------------------
// A batch's layout on the device. Row i of the batch has slot slot_mapping[i] in the pool
// (block x block_size + offset; -1: padding, not written). Sequence j has new_tokens[j] rows
// starting at row0[j], at positions context[j] .. context[j] + new_tokens[j] - 1, and its
// blocks in block_tables[j * max_blocks ..]. Pool layouts as in ops.h (kv_offset; the latent
// pool [blocks, block_size, width]).
struct PagedBatch {
  const std::int64_t* slot_mapping = nullptr;
  const std::int32_t* block_tables = nullptr;
  const std::int32_t* row0 = nullptr;
  const std::int32_t* new_tokens = nullptr;
  const std::int32_t* context = nullptr;
  std::int64_t num_seqs = 0, rows = 0, max_blocks = 0;
  std::int64_t max_new = 0;      // the largest new_tokens: 1 for a decode-only batch
  std::int64_t max_context = 0;  // the largest context + new_tokens
};
KernelStatus kv_write_cuda(const float* k, const float* v, void* k_pool, void* v_pool, DType kv,
                           const std::int64_t* slot_mapping, std::int64_t rows,
                           std::int64_t heads, std::int64_t dim, std::int64_t block_size,
                           Stream s);
KernelStatus latent_write_cuda(const float* latent, void* pool, DType kv,
                               const std::int64_t* slot_mapping, std::int64_t rows,
                               std::int64_t width, Stream s);
// Causal attention of each new row over its sequence's cache (paged_attention_ref): a decode
// kernel when max_new == 1, a tiled flash-style kernel (online softmax over key tiles) else.
KernelStatus paged_attention_cuda(const float* q, const void* k_pool, const void* v_pool,
                                  DType kv, const PagedBatch& b, std::int64_t q_heads,
                                  std::int64_t kv_heads, std::int64_t dim,
                                  std::int64_t block_size, float scale, float* out, Stream s);
// MLA over the latent cache (mla_attention_ref), any new_tokens.
KernelStatus mla_attention_cuda(const float* q_lat, const float* q_pe, const void* pool,
                                DType kv, const PagedBatch& b, std::int64_t heads, std::int64_t lora,
                                std::int64_t rope, std::int64_t block_size, float scale,
                                float* out, Stream s);

// ---- Host helpers for tests and benchmarks (kernels/host.cu) ------------------------------
// Device memory that frees itself; copies to and from host vectors.
KernelStatus device_alloc(void** p, std::size_t bytes);
void device_free(void* p);
KernelStatus to_device(void* dst, const void* src, std::size_t bytes);
KernelStatus to_host(void* dst, const void* src, std::size_t bytes);
KernelStatus device_sync();

}  // namespace tpp::kernels
