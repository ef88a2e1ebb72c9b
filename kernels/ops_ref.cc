#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/ops.h"

namespace tpp::kernels {

void add_rmsnorm_ref(const float* x, float* residual, const float* w, float* y,
                     std::int64_t rows, std::int64_t cols, float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* res = residual ? residual + r * cols : nullptr;
    float* yr = y + r * cols;
    double ss = 0;
    for (std::int64_t c = 0; c < cols; ++c) {
      const float v = res ? res[c] + xr[c] : xr[c];
      if (res) res[c] = v;
      ss += static_cast<double>(v) * v;
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(cols) + eps));
    const float* src = res ? res : xr;
    for (std::int64_t c = 0; c < cols; ++c) yr[c] = src[c] * inv * w[c];
  }
}

void rope_neox_ref(float* x, const std::int64_t* pos, std::int64_t rows, std::int64_t heads,
                   std::int64_t head_stride, std::int64_t offset, std::int64_t rot, float theta) {
  const std::int64_t half = rot / 2;
  std::vector<float> cs(static_cast<std::size_t>(half)), sn(static_cast<std::size_t>(half));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t i = 0; i < half; ++i) {
      const double inv_freq = std::pow(static_cast<double>(theta), -2.0 * i / rot);
      const double a = static_cast<double>(pos[r]) * inv_freq;
      cs[i] = static_cast<float>(std::cos(a));
      sn[i] = static_cast<float>(std::sin(a));
    }
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

void silu_mul_ref(const float* gate_up, float* out, std::int64_t rows, std::int64_t inter) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* g = gate_up + r * 2 * inter;
    const float* u = g + inter;
    float* o = out + r * inter;
    for (std::int64_t c = 0; c < inter; ++c) o[c] = g[c] / (1.0f + std::exp(-g[c])) * u[c];
  }
}

void embedding_ref(const std::int64_t* tokens, std::int64_t n, const float* table,
                   std::int64_t vocab0, std::int64_t rows, std::int64_t dim, float* out) {
  for (std::int64_t k = 0; k < n; ++k) {
    const std::int64_t local = tokens[k] - vocab0;
    float* o = out + k * dim;
    if (local >= 0 && local < rows)
      std::memcpy(o, table + local * dim, static_cast<std::size_t>(dim) * sizeof(float));
    else
      std::fill(o, o + dim, 0.0f);
  }
}

namespace {

// The pool offset of position p of a sequence: its block, then the slot in the block.
std::int64_t slot(const PagedSeq& s, std::int64_t p, std::int64_t block_size) {
  return static_cast<std::int64_t>(s.block_table[p / block_size]) * block_size + p % block_size;
}

}  // namespace

void kv_write_ref(const float* k, const float* v, float* k_pool, float* v_pool,
                  const PagedSeq* seqs, std::int64_t num_seqs, std::int64_t heads,
                  std::int64_t dim, std::int64_t block_size) {
  for (std::int64_t s = 0; s < num_seqs; ++s)
    for (std::int64_t i = 0; i < seqs[s].new_tokens; ++i) {
      const std::int64_t row = seqs[s].row0 + i, p = seqs[s].context + i;
      const std::int64_t block = seqs[s].block_table[p / block_size], sl = p % block_size;
      for (std::int64_t h = 0; h < heads; ++h) {
        const std::int64_t at = kv_offset(block, h, sl, heads, dim, block_size);
        std::memcpy(k_pool + at, k + (row * heads + h) * dim, static_cast<std::size_t>(dim) * sizeof(float));
        std::memcpy(v_pool + at, v + (row * heads + h) * dim, static_cast<std::size_t>(dim) * sizeof(float));
      }
    }
}

void paged_attention_ref(const float* q, const float* k_pool, const float* v_pool,
                         const PagedSeq* seqs, std::int64_t num_seqs, std::int64_t q_heads,
                         std::int64_t kv_heads, std::int64_t dim, std::int64_t block_size,
                         float scale, float* out) {
  const std::int64_t group = q_heads / kv_heads;
  std::vector<float> p;
  for (std::int64_t s = 0; s < num_seqs; ++s) {
    const PagedSeq& sq = seqs[s];
    auto at = [&](std::int64_t t, std::int64_t h) {
      return kv_offset(sq.block_table[t / block_size], h, t % block_size, kv_heads, dim, block_size);
    };
    for (std::int64_t i = 0; i < sq.new_tokens; ++i) {
      const std::int64_t row = sq.row0 + i, last = sq.context + i;  // attends to 0..last
      p.resize(static_cast<std::size_t>(last + 1));
      for (std::int64_t h = 0; h < q_heads; ++h) {
        const float* qh = q + (row * q_heads + h) * dim;
        const std::int64_t kvh = h / group;
        float mx = -std::numeric_limits<float>::infinity();
        for (std::int64_t t = 0; t <= last; ++t) {
          const float* kt = k_pool + at(t, kvh);
          float d = 0;
          for (std::int64_t c = 0; c < dim; ++c) d += qh[c] * kt[c];
          p[t] = d * scale;
          mx = std::max(mx, p[t]);
        }
        float sum = 0;
        for (std::int64_t t = 0; t <= last; ++t) sum += (p[t] = std::exp(p[t] - mx));
        float* o = out + (row * q_heads + h) * dim;
        std::fill(o, o + dim, 0.0f);
        for (std::int64_t t = 0; t <= last; ++t) {
          const float* vt = v_pool + at(t, kvh);
          const float w = p[t] / sum;
          for (std::int64_t c = 0; c < dim; ++c) o[c] += w * vt[c];
        }
      }
    }
  }
}

void latent_write_ref(const float* latent, float* pool, const PagedSeq* seqs,
                      std::int64_t num_seqs, std::int64_t width, std::int64_t block_size) {
  for (std::int64_t s = 0; s < num_seqs; ++s)
    for (std::int64_t i = 0; i < seqs[s].new_tokens; ++i) {
      const std::int64_t row = seqs[s].row0 + i;
      std::memcpy(pool + slot(seqs[s], seqs[s].context + i, block_size) * width,
                  latent + row * width, static_cast<std::size_t>(width) * sizeof(float));
    }
}

void mla_attention_ref(const float* q_lat, const float* q_pe, const float* pool,
                       const PagedSeq* seqs, std::int64_t num_seqs, std::int64_t heads,
                       std::int64_t lora, std::int64_t rope, std::int64_t block_size, float scale,
                       float* out) {
  const std::int64_t width = lora + rope;
  std::vector<float> p;
  for (std::int64_t s = 0; s < num_seqs; ++s) {
    const PagedSeq& sq = seqs[s];
    for (std::int64_t i = 0; i < sq.new_tokens; ++i) {
      const std::int64_t row = sq.row0 + i, last = sq.context + i;
      p.resize(static_cast<std::size_t>(last + 1));
      for (std::int64_t h = 0; h < heads; ++h) {
        const float* ql = q_lat + (row * heads + h) * lora;
        const float* qp = q_pe + (row * heads + h) * rope;
        float mx = -std::numeric_limits<float>::infinity();
        for (std::int64_t t = 0; t <= last; ++t) {
          const float* c = pool + slot(sq, t, block_size) * width;
          float d = 0;
          for (std::int64_t j = 0; j < lora; ++j) d += ql[j] * c[j];
          for (std::int64_t j = 0; j < rope; ++j) d += qp[j] * c[lora + j];
          p[t] = d * scale;
          mx = std::max(mx, p[t]);
        }
        float sum = 0;
        for (std::int64_t t = 0; t <= last; ++t) sum += (p[t] = std::exp(p[t] - mx));
        float* o = out + (row * heads + h) * lora;
        std::fill(o, o + lora, 0.0f);
        for (std::int64_t t = 0; t <= last; ++t) {
          const float* c = pool + slot(sq, t, block_size) * width;
          const float w = p[t] / sum;
          for (std::int64_t j = 0; j < lora; ++j) o[j] += w * c[j];
        }
      }
    }
  }
}

void topk_softmax_ref(const float* logits, std::int64_t rows, std::int64_t experts,
                      std::int64_t k, std::int32_t* ids, float* weights) {
  std::vector<std::int32_t> order(static_cast<std::size_t>(experts));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* l = logits + r * experts;
    for (std::int64_t e = 0; e < experts; ++e) order[e] = static_cast<std::int32_t>(e);
    // Top k by logit (softmax is monotonic), the lower index first on ties.
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](std::int32_t a, std::int32_t b) {
                        return l[a] > l[b] || (l[a] == l[b] && a < b);
                      });
    // Renormalised softmax over the chosen: exp(l_i - max) / sum over the k.
    const float mx = l[order[0]];
    float sum = 0;
    for (std::int64_t j = 0; j < k; ++j) sum += std::exp(l[order[j]] - mx);
    for (std::int64_t j = 0; j < k; ++j) {
      ids[r * k + j] = order[j];
      weights[r * k + j] = std::exp(l[order[j]] - mx) / sum;
    }
  }
}

void argmax_ref(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t* out) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    std::int64_t best = 0;
    for (std::int64_t c = 1; c < cols; ++c)
      if (xr[c] > xr[best]) best = c;
    out[r] = best;
  }
}

void rope_inv_freq(float theta, std::int64_t rot, float* inv_freq) {
  for (std::int64_t i = 0; i < rot / 2; ++i)
    inv_freq[i] = static_cast<float>(std::pow(static_cast<double>(theta), -2.0 * i / rot));
}

namespace {
// vLLM's _yarn_find_correction_dim.
double yarn_dim(double rotations, double dim, double base, double max_pos) {
  return dim * std::log(max_pos / (rotations * 2 * M_PI)) / (2 * std::log(base));
}
double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}
}  // namespace

void yarn_inv_freq(float theta, std::int64_t rot, float factor, std::int64_t original_max,
                   float beta_fast, float beta_slow, float* inv_freq) {
  const double d = static_cast<double>(rot);
  double low = std::floor(yarn_dim(beta_fast, d, theta, static_cast<double>(original_max)));
  double high = std::ceil(yarn_dim(beta_slow, d, theta, static_cast<double>(original_max)));
  low = std::max(low, 0.0);
  high = std::min(high, d - 1);
  if (low == high) high += 0.001;
  for (std::int64_t i = 0; i < rot / 2; ++i) {
    const double pos_freq = std::pow(static_cast<double>(theta), 2.0 * i / d);
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double mask = 1 - ramp;  // extrapolation weight (extrapolation_factor 1)
    inv_freq[i] = static_cast<float>(1 / (factor * pos_freq) * (1 - mask) + 1 / pos_freq * mask);
  }
}

float yarn_mscale(float factor, float mscale, float mscale_all_dim) {
  return static_cast<float>(yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim));
}

void rope_ref(float* x, const std::int64_t* pos, std::int64_t rows, std::int64_t heads,
              std::int64_t head_stride, std::int64_t offset, std::int64_t rot,
              const float* inv_freq, float mscale, bool neox) {
  const std::int64_t half = rot / 2;
  std::vector<float> cs(static_cast<std::size_t>(half)), sn(static_cast<std::size_t>(half));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(pos[r]) * inv_freq[i];
      cs[i] = static_cast<float>(std::cos(a)) * mscale;
      sn[i] = static_cast<float>(std::sin(a)) * mscale;
    }
    for (std::int64_t h = 0; h < heads; ++h) {
      float* v = x + (r * heads + h) * head_stride + offset;
      for (std::int64_t i = 0; i < half; ++i) {
        const std::int64_t ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
        const float a = v[ia], b = v[ib];
        v[ia] = a * cs[i] - b * sn[i];
        v[ib] = b * cs[i] + a * sn[i];
      }
    }
  }
}

void add_bias_ref(float* y, const float* bias, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) y[r * cols + c] += bias[c];
}

void add_scaled_ref(float* y, const float* x, std::int64_t n, float a) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void sigmoid_gate_ref(float* y, const float* gate, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float s = 1.0f / (1.0f + std::exp(-gate[r]));
    for (std::int64_t c = 0; c < cols; ++c) y[r * cols + c] *= s;
  }
}

void gather_rows_ref(const float* src, const std::int32_t* index, std::int64_t n,
                     std::int64_t cols, float* dst) {
  for (std::int64_t i = 0; i < n; ++i)
    std::memcpy(dst + i * cols, src + static_cast<std::int64_t>(index[i]) * cols,
                static_cast<std::size_t>(cols) * sizeof(float));
}

void moe_permute_ref(const std::int32_t* ids, std::int64_t rows, std::int64_t k,
                     std::int64_t first, std::int64_t local, std::int32_t* offsets,
                     std::int32_t* src_row, std::int32_t* where) {
  for (std::int64_t i = 0; i < rows * k; ++i) where[i] = -1;
  std::int32_t n = 0;
  for (std::int64_t e = 0; e < local; ++e) {
    offsets[e] = n;
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < k; ++j)
        if (ids[r * k + j] == first + e) {
          src_row[n] = static_cast<std::int32_t>(r);
          where[r * k + j] = n++;
        }
  }
  offsets[local] = n;
}

void moe_combine_ref(const float* y, const std::int32_t* where, const float* weights,
                     std::int64_t rows, std::int64_t k, std::int64_t cols, float* out) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* o = out + r * cols;
    for (std::int64_t c = 0; c < cols; ++c) o[c] = 0;
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int32_t at = where[r * k + j];
      if (at < 0) continue;
      const float w = weights[r * k + j];
      const float* yr = y + static_cast<std::int64_t>(at) * cols;
      for (std::int64_t c = 0; c < cols; ++c) o[c] += w * yr[c];
    }
  }
}

float bf16_round(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) {  // inf or nan: keep (nan stays nan)
    u &= 0xffff0000u;
    if (x != x) u |= 0x00400000u;
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    u &= 0xffff0000u;
  }
  float y;
  std::memcpy(&y, &u, 4);
  return y;
}

float fp8_e4m3_round(float x) {
  if (x != x) return x;
  const float a = std::fabs(x);
  if (a >= 448.0f) return std::copysign(448.0f, x);  // saturate (SATFINITE)
  // Spacing: subnormals (|x| < 2^-6) step 2^-9; else 2^(e - 3) with e = floor(log2 |x|).
  int e;
  std::frexp(a, &e);  // a = m x 2^e, m in [0.5, 1): floor(log2 a) = e - 1
  const float step = a < 0x1.0p-6f ? 0x1.0p-9f : std::ldexp(1.0f, e - 1 - 3);
  const float q = std::nearbyint(a / step) * step;  // ties to even (default rounding mode)
  return std::copysign(std::min(q, 448.0f), x);
}

float quantize_fp8_dynamic_ref(const float* x, std::int64_t n, float* y) {
  float amax = 0;
  for (std::int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float s = amax > 0.0f && std::isfinite(amax) ? amax / 448.0f : 1.0f;
  for (std::int64_t i = 0; i < n; ++i) y[i] = fp8_e4m3_round(x[i] / s);
  return s;
}

}  // namespace tpp::kernels
