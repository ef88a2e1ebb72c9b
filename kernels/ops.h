// The decoder's operators other than GEMM, as CPU references: row-major float32, host pointers.
// They are the CPU backend's implementation and the definition a CUDA kernel is checked against
// (tests/kernels_test.cc). Leaves: nothing of the project but this folder is included.
#pragma once

#include <cstdint>

namespace tpp::kernels {

// vLLM's fused_add_rms_norm: residual += x; y = rmsnorm(residual) * w. With residual null:
// y = rmsnorm(x) * w, and x is copied to `residual_out` when that is not null.
void add_rmsnorm_ref(const float* x, float* residual, const float* w, float* y,
                     std::int64_t rows, std::int64_t cols, float eps);

// Rotary embedding, GPT-NeoX style (vLLM's is_neox_style, Llama and DeepSeek): within each
// head, element i of the first rot/2 pairs with element i + rot/2, rotated by
// pos x theta^(-2i/rot). `x` is [rows, heads, head_stride] and the rotated part starts at
// `offset` within each head; `pos` is the position of each row.
void rope_neox_ref(float* x, const std::int64_t* pos, std::int64_t rows, std::int64_t heads,
                   std::int64_t head_stride, std::int64_t offset, std::int64_t rot, float theta);

// out[r, :] = silu(gate_up[r, :inter]) * gate_up[r, inter:] (vLLM's SiluAndMul).
void silu_mul_ref(const float* gate_up, float* out, std::int64_t rows, std::int64_t inter);

// Vocabulary-parallel embedding: this rank holds rows [vocab0, vocab0 + rows) of the table;
// tokens outside give zero rows (the TP all-reduce sums the ranks' rows).
void embedding_ref(const std::int64_t* tokens, std::int64_t n, const float* table,
                   std::int64_t vocab0, std::int64_t rows, std::int64_t dim, float* out);

// A sequence of a batch, for the paged operators: `new_tokens` rows of the batch starting at
// `row0`, at positions context .. context + new_tokens - 1, its blocks in `block_table`.
struct PagedSeq {
  std::int64_t row0 = 0, new_tokens = 0, context = 0;
  const std::int32_t* block_table = nullptr;
};

// The KV pool's layout: [blocks][heads][block_size][dim], so that one head's part of a block is
// contiguous (block_size x dim floats). Offset of (block, head, slot).
inline std::int64_t kv_offset(std::int64_t block, std::int64_t head, std::int64_t slot,
                              std::int64_t heads, std::int64_t dim, std::int64_t block_size) {
  return ((block * heads + head) * block_size + slot) * dim;
}

// Writes each new token's K and V ([rows, heads, dim]) into the pool at its position's slot
// (vLLM's reshape_and_cache).
void kv_write_ref(const float* k, const float* v, float* k_pool, float* v_pool,
                  const PagedSeq* seqs, std::int64_t num_seqs, std::int64_t heads,
                  std::int64_t dim, std::int64_t block_size);

// Causal attention of each new token over its sequence's cached positions 0..its own, reading
// K and V through the block table; q_heads / kv_heads query heads share a KV head (GQA).
// q and out are [rows, q_heads, dim]; softmax(q.k x scale) v.
void paged_attention_ref(const float* q, const float* k_pool, const float* v_pool,
                         const PagedSeq* seqs, std::int64_t num_seqs, std::int64_t q_heads,
                         std::int64_t kv_heads, std::int64_t dim, std::int64_t block_size,
                         float scale, float* out);

// MLA attention over the latent cache (DeepSeek, weights absorbed): each head scores cached
// token t by q_lat . c_t + q_pe . pe_t, and returns sum_t p_t c_t. q_lat [rows, heads, lora],
// q_pe [rows, heads, rope]; the pool holds [blocks, block_size, lora + rope] (c then pe).
// out [rows, heads, lora].
void mla_attention_ref(const float* q_lat, const float* q_pe, const float* pool,
                       const PagedSeq* seqs, std::int64_t num_seqs, std::int64_t heads,
                       std::int64_t lora, std::int64_t rope, std::int64_t block_size, float scale,
                       float* out);

// Writes each new token's latent ([rows, lora + rope]) into the pool at its slot.
void latent_write_ref(const float* latent, float* pool, const PagedSeq* seqs,
                      std::int64_t num_seqs, std::int64_t width, std::int64_t block_size);

// MoE routing (Mixtral's, vLLM's fused_topk with renormalize): softmax over the experts, the
// top k, their weights renormalised to sum to 1. logits [rows, experts]; ids, weights [rows, k].
void topk_softmax_ref(const float* logits, std::int64_t rows, std::int64_t experts,
                      std::int64_t k, std::int32_t* ids, float* weights);

// Greedy sampling: the index of each row's largest value (the first, on ties).
void argmax_ref(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t* out);

// ---- Added for the GPU backend: each is the definition of a kernel in cuda_ops.h ----------

// Inverse frequencies of rotary embedding: theta^(-2i / rot), i < rot / 2.
void rope_inv_freq(float theta, std::int64_t rot, float* inv_freq);
// DeepSeek's YaRN (vLLM's DeepseekScalingRotaryEmbedding._compute_inv_freq): interpolated
// frequencies (/ factor) below the correction range found from beta_fast and beta_slow,
// extrapolated above, a linear ramp between.
void yarn_inv_freq(float theta, std::int64_t rot, float factor, std::int64_t original_max,
                   float beta_fast, float beta_slow, float* inv_freq);
// YaRN's attention factor (yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor,
// mscale_all_dim)); cos and sin are multiplied by it.
float yarn_mscale(float factor, float mscale, float mscale_all_dim);
// Rotary from a table of inverse frequencies: NeoX pairs (i, i + rot/2), or, with neox false,
// GPT-J's interleaved pairs (2i, 2i + 1). rope_neox_ref(theta) = rope_ref(rope_inv_freq(theta),
// mscale 1, neox).
void rope_ref(float* x, const std::int64_t* pos, std::int64_t rows, std::int64_t heads,
              std::int64_t head_stride, std::int64_t offset, std::int64_t rot,
              const float* inv_freq, float mscale, bool neox);

// y[r, c] += bias[c]
void add_bias_ref(float* y, const float* bias, std::int64_t rows, std::int64_t cols);
// y[i] += a x[i]
void add_scaled_ref(float* y, const float* x, std::int64_t n, float a);
// y[r, :] *= sigmoid(gate[r])
void sigmoid_gate_ref(float* y, const float* gate, std::int64_t rows, std::int64_t cols);
// dst[i, :] = src[index[i], :]
void gather_rows_ref(const float* src, const std::int32_t* index, std::int64_t n,
                     std::int64_t cols, float* dst);

// MoE permutation and combination (cuda_ops.h's moe_permute_cuda and moe_combine_cuda).
void moe_permute_ref(const std::int32_t* ids, std::int64_t rows, std::int64_t k,
                     std::int64_t first, std::int64_t local, std::int32_t* offsets,
                     std::int32_t* src_row, std::int32_t* where);
void moe_combine_ref(const float* y, const std::int32_t* where, const float* weights,
                     std::int64_t rows, std::int64_t k, std::int64_t cols, float* out);

// The values a float takes in the GPU's weight types: bfloat16 (round to nearest even) and
// float8 e4m3 (OCP: 4 exponent bits, bias 7, max 448, round to nearest even, saturating).
float bf16_round(float x);
float fp8_e4m3_round(float x);
// Dynamic per-tensor fp8: s = max |x| / 448 (1 when that is 0 or not finite); y[i] = the fp8
// value of x[i] / s (as a float). Returns s.
float quantize_fp8_dynamic_ref(const float* x, std::int64_t n, float* y);

}  // namespace tpp::kernels
