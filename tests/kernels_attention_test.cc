// The paged KV cache and attention kernels (kernels/attention.cu) against their CPU references
// (kernels/ops.h). GPU comparisons skip, visibly, where no GPU is present; the CPU checks of the
// references themselves (paged equals dense) always run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda_ops.h"
#include "kernels/device.h"
#include "kernels/ops.h"

#if defined(TPP_HAVE_CUDA)
#include <cuda_runtime.h>
#endif

namespace tpp {
namespace {

using kernels::DType;
using kernels::PagedSeq;

#define TPP_SKIP_WITHOUT_GPU()                                                        \
  do {                                                                                \
    if (kernels::device_count() == 0)                                                 \
      GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"          \
                                                  : "built without CUDA");            \
  } while (0)

std::vector<float> random_vector(std::size_t n, unsigned seed, float sd = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A batch on the host: sequences (context, new tokens) whose blocks are scattered over the pool
// in shuffled order, rows packed in sequence order, then `pad_rows` padding rows (slot -1).
struct Batch {
  std::int64_t block_size = 16, num_blocks = 0, max_blocks = 0, rows = 0, used_rows = 0;
  std::int64_t max_new = 0, max_context = 0;
  std::vector<std::int32_t> context, new_tokens, row0, tables;
  std::vector<std::int64_t> slots;
  std::int64_t num_seqs() const { return static_cast<std::int64_t>(context.size()); }
  std::vector<PagedSeq> seqs() const {
    std::vector<PagedSeq> s(context.size());
    for (std::size_t j = 0; j < s.size(); ++j) {
      s[j].row0 = row0[j];
      s[j].new_tokens = new_tokens[j];
      s[j].context = context[j];
      s[j].block_table = tables.data() + j * max_blocks;
    }
    return s;
  }
};

Batch make_batch(const std::vector<std::pair<int, int>>& spec, std::int64_t block_size,
                 int pad_rows, unsigned seed) {
  Batch b;
  b.block_size = block_size;
  std::int64_t needed = 0;
  for (auto [ctx, n] : spec) {
    const std::int64_t blocks = (ctx + n + block_size - 1) / block_size;
    needed += blocks;
    b.max_blocks = std::max(b.max_blocks, blocks);
    b.max_new = std::max<std::int64_t>(b.max_new, n);
    b.max_context = std::max<std::int64_t>(b.max_context, ctx + n);
  }
  b.max_blocks += 1;  // an unused column (-1) at the end of every table
  b.num_blocks = needed + 7;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(b.num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  b.tables.assign(static_cast<std::size_t>(spec.size() * b.max_blocks), -1);
  std::size_t next = 0;
  std::int32_t row = 0;
  for (std::size_t j = 0; j < spec.size(); ++j) {
    const auto [ctx, n] = spec[j];
    b.context.push_back(ctx);
    b.new_tokens.push_back(n);
    b.row0.push_back(row);
    const std::int64_t blocks = (ctx + n + block_size - 1) / block_size;
    for (std::int64_t k = 0; k < blocks; ++k) b.tables[j * b.max_blocks + k] = ids[next++];
    for (int i = 0; i < n; ++i) {
      const std::int64_t p = ctx + i;
      b.slots.push_back(static_cast<std::int64_t>(b.tables[j * b.max_blocks + p / block_size]) *
                            block_size + p % block_size);
    }
    row += n;
  }
  b.used_rows = row;
  for (int i = 0; i < pad_rows; ++i) b.slots.push_back(-1);
  b.rows = row + pad_rows;
  return b;
}

// The values a pool of type t holds (bf16: rounded), and their bytes.
void round_to(std::vector<float>& v, DType t) {
  if (t == DType::kBF16)
    for (float& x : v) x = kernels::bf16_round(x);
}
[[maybe_unused]] std::vector<unsigned char> pool_bytes(const std::vector<float>& v, DType t) {
  std::vector<unsigned char> out(v.size() * static_cast<std::size_t>(kernels::dtype_bytes(t)));
  if (t == DType::kF32) {
    std::memcpy(out.data(), v.data(), out.size());
  } else {
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::uint32_t u;
      const float r = kernels::bf16_round(v[i]);
      std::memcpy(&u, &r, 4);
      const std::uint16_t h = static_cast<std::uint16_t>(u >> 16);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}
[[maybe_unused]] std::vector<float> pool_floats(const std::vector<unsigned char>& bytes, DType t) {
  const std::size_t n = bytes.size() / static_cast<std::size_t>(kernels::dtype_bytes(t));
  std::vector<float> out(n);
  if (t == DType::kF32) {
    std::memcpy(out.data(), bytes.data(), bytes.size());
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
      std::memcpy(&out[i], &u, 4);
    }
  }
  return out;
}

// Counts elements outside |got - ref| <= abs_tol + rel x |ref| among the first n, reporting the
// first few with their index.
int count_mismatches(const std::vector<float>& got, const std::vector<float>& ref, std::size_t n,
                     float rel, float abs_tol, const std::string& what) {
  int wrong = 0;
  std::ostringstream msg;
  for (std::size_t i = 0; i < n; ++i) {
    const float d = std::fabs(got[i] - ref[i]);
    if (!(d <= abs_tol + rel * std::fabs(ref[i]))) {
      if (wrong < 8) msg << "  [" << i << "] got " << got[i] << " want " << ref[i] << "\n";
      ++wrong;
    }
  }
  if (wrong) ADD_FAILURE() << what << ": " << wrong << " of " << n << " mismatches\n" << msg.str();
  return wrong;
}

[[maybe_unused]] const char* name(DType t) { return t == DType::kF32 ? "f32" : "bf16"; }

// ---- CPU: the references over paged blocks equal dense causal attention --------------------

TEST(PagedAttentionRef, NonContiguousBlocksEqualDenseCausalAttention) {
  const std::int64_t qh = 8, kvh = 2, dim = 24, bs = 4;
  const float scale = 1.f / std::sqrt(static_cast<float>(dim));
  Batch b = make_batch({{0, 9}, {13, 5}, {6, 1}, {3, 0}}, bs, 2, 11);
  // The blocks of the first sequence are not contiguous nor in order.
  ASSERT_GE(b.max_blocks, 3);
  bool scattered = false;
  for (std::int64_t k = 1; k < (9 + bs - 1) / bs; ++k)
    scattered |= b.tables[k] != b.tables[k - 1] + 1;
  ASSERT_TRUE(scattered);
  const auto seqs = b.seqs();
  std::vector<float> k_pool(static_cast<std::size_t>(b.num_blocks * kvh * bs * dim), NAN);
  std::vector<float> v_pool = k_pool;
  auto q = random_vector(static_cast<std::size_t>(b.rows * qh * dim), 1);
  std::vector<float> out(q.size(), 0.f);
  // Dense K and V per sequence and position, scattered into the pool through the tables.
  std::vector<std::vector<float>> kd(seqs.size()), vd(seqs.size());
  for (std::size_t j = 0; j < seqs.size(); ++j) {
    const std::int64_t len = seqs[j].context + seqs[j].new_tokens;
    kd[j] = random_vector(static_cast<std::size_t>(len * kvh * dim), 100 + j);
    vd[j] = random_vector(static_cast<std::size_t>(len * kvh * dim), 200 + j);
    for (std::int64_t p = 0; p < len; ++p)
      for (std::int64_t h = 0; h < kvh; ++h) {
        const std::int64_t at = kernels::kv_offset(seqs[j].block_table[p / bs], h, p % bs, kvh,
                                                   dim, bs);
        for (std::int64_t d = 0; d < dim; ++d) {
          k_pool[at + d] = kd[j][(p * kvh + h) * dim + d];
          v_pool[at + d] = vd[j][(p * kvh + h) * dim + d];
        }
      }
  }
  kernels::paged_attention_ref(q.data(), k_pool.data(), v_pool.data(), seqs.data(),
                               b.num_seqs(), qh, kvh, dim, bs, scale, out.data());
  std::vector<float> want(q.size(), 0.f);
  for (std::size_t j = 0; j < seqs.size(); ++j)
    for (std::int64_t i = 0; i < seqs[j].new_tokens; ++i) {
      const std::int64_t row = seqs[j].row0 + i, last = seqs[j].context + i;
      for (std::int64_t h = 0; h < qh; ++h) {
        const std::int64_t g = h / (qh / kvh);
        std::vector<double> s(static_cast<std::size_t>(last + 1));
        double mx = -1e300, sum = 0;
        for (std::int64_t t = 0; t <= last; ++t) {
          double dot = 0;
          for (std::int64_t d = 0; d < dim; ++d)
            dot += double(q[(row * qh + h) * dim + d]) * kd[j][(t * kvh + g) * dim + d];
          s[t] = dot * scale;
          mx = std::max(mx, s[t]);
        }
        for (auto& x : s) sum += (x = std::exp(x - mx));
        for (std::int64_t d = 0; d < dim; ++d) {
          double o = 0;
          for (std::int64_t t = 0; t <= last; ++t) o += s[t] / sum * vd[j][(t * kvh + g) * dim + d];
          want[(row * qh + h) * dim + d] = static_cast<float>(o);
        }
      }
    }
  EXPECT_EQ(count_mismatches(out, want, static_cast<std::size_t>(b.used_rows * qh * dim), 1e-4f,
                             1e-5f, "paged_attention_ref vs dense"),
            0);
}

TEST(MlaAttentionRef, LatentPoolEqualsDenseAttention) {
  const std::int64_t heads = 3, lora = 20, rope = 6, width = lora + rope, bs = 4;
  const float scale = 0.2f;
  Batch b = make_batch({{5, 3}, {0, 6}, {9, 1}}, bs, 1, 5);
  const auto seqs = b.seqs();
  auto latent = random_vector(static_cast<std::size_t>(b.rows * width), 3);
  std::vector<float> pool(static_cast<std::size_t>(b.num_blocks * bs * width), NAN);
  std::vector<std::vector<float>> dense(seqs.size());
  for (std::size_t j = 0; j < seqs.size(); ++j) {
    const std::int64_t len = seqs[j].context + seqs[j].new_tokens;
    dense[j] = random_vector(static_cast<std::size_t>(len * width), 50 + j);
    for (std::int64_t p = 0; p < seqs[j].context; ++p)  // the cache before this step
      std::copy_n(&dense[j][p * width], width,
                  &pool[(seqs[j].block_table[p / bs] * bs + p % bs) * width]);
    for (std::int64_t i = 0; i < seqs[j].new_tokens; ++i)  // this step's rows, written below
      std::copy_n(&dense[j][(seqs[j].context + i) * width], width,
                  &latent[(seqs[j].row0 + i) * width]);
  }
  kernels::latent_write_ref(latent.data(), pool.data(), seqs.data(), b.num_seqs(), width, bs);
  auto ql = random_vector(static_cast<std::size_t>(b.rows * heads * lora), 7);
  auto qp = random_vector(static_cast<std::size_t>(b.rows * heads * rope), 8);
  std::vector<float> out(static_cast<std::size_t>(b.rows * heads * lora), 0.f), want = out;
  kernels::mla_attention_ref(ql.data(), qp.data(), pool.data(), seqs.data(), b.num_seqs(), heads,
                             lora, rope, bs, scale, out.data());
  for (std::size_t j = 0; j < seqs.size(); ++j)
    for (std::int64_t i = 0; i < seqs[j].new_tokens; ++i) {
      const std::int64_t row = seqs[j].row0 + i, last = seqs[j].context + i;
      for (std::int64_t h = 0; h < heads; ++h) {
        std::vector<double> s(static_cast<std::size_t>(last + 1));
        double mx = -1e300, sum = 0;
        for (std::int64_t t = 0; t <= last; ++t) {
          double dot = 0;
          for (std::int64_t c = 0; c < lora; ++c)
            dot += double(ql[(row * heads + h) * lora + c]) * dense[j][t * width + c];
          for (std::int64_t c = 0; c < rope; ++c)
            dot += double(qp[(row * heads + h) * rope + c]) * dense[j][t * width + lora + c];
          s[t] = dot * scale;
          mx = std::max(mx, s[t]);
        }
        for (auto& x : s) sum += (x = std::exp(x - mx));
        for (std::int64_t c = 0; c < lora; ++c) {
          double o = 0;
          for (std::int64_t t = 0; t <= last; ++t) o += s[t] / sum * dense[j][t * width + c];
          want[(row * heads + h) * lora + c] = static_cast<float>(o);
        }
      }
    }
  EXPECT_EQ(count_mismatches(out, want, static_cast<std::size_t>(b.used_rows * heads * lora),
                             1e-4f, 1e-5f, "mla_attention_ref vs dense"),
            0);
}

// The slot mapping the GPU tests build agrees with the block tables the references read.
TEST(KvWriteRef, SlotMappingAgreesWithBlockTables) {
  const std::int64_t heads = 2, dim = 5, bs = 3;
  Batch b = make_batch({{4, 5}, {0, 2}, {7, 1}}, bs, 2, 9);
  const auto seqs = b.seqs();
  auto k = random_vector(static_cast<std::size_t>(b.rows * heads * dim), 1);
  auto v = random_vector(k.size(), 2);
  std::vector<float> kp(static_cast<std::size_t>(b.num_blocks * heads * bs * dim), 0.f), vp = kp;
  kernels::kv_write_ref(k.data(), v.data(), kp.data(), vp.data(), seqs.data(), b.num_seqs(),
                        heads, dim, bs);
  for (std::int64_t row = 0; row < b.rows; ++row) {
    const std::int64_t slot = b.slots[row];
    if (slot < 0) continue;
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t d = 0; d < dim; ++d) {
        const std::int64_t at = kernels::kv_offset(slot / bs, h, slot % bs, heads, dim, bs) + d;
        EXPECT_EQ(kp[at], k[(row * heads + h) * dim + d]) << "row " << row;
        EXPECT_EQ(vp[at], v[(row * heads + h) * dim + d]) << "row " << row;
      }
  }
  EXPECT_EQ(b.rows, 10);
  EXPECT_EQ(b.used_rows, 8);
}

// ---- GPU comparisons ----------------------------------------------------------------------

#if defined(TPP_HAVE_CUDA)

// Device memory that frees itself.
struct Dev {
  void* p = nullptr;
  std::size_t bytes = 0;
  explicit Dev(std::size_t n) : bytes(n) {
    if (cudaMalloc(&p, std::max<std::size_t>(n, 16)) != cudaSuccess) p = nullptr;
  }
  ~Dev() {
    if (p) cudaFree(p);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

template <class T>
std::unique_ptr<Dev> upload(const std::vector<T>& v) {
  auto d = std::make_unique<Dev>(v.size() * sizeof(T));
  if (d->p && !v.empty())
    EXPECT_EQ(cudaMemcpy(d->p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  EXPECT_NE(d->p, nullptr) << "cudaMalloc failed";
  return d;
}

template <class T>
std::vector<T> download(const Dev& d, std::size_t n) {
  std::vector<T> v(n);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(v.data(), d.p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

// The batch's index arrays on the device.
struct DevBatch {
  std::unique_ptr<Dev> slots, tables, row0, new_tokens, context;
  kernels::PagedBatch pb;
  explicit DevBatch(const Batch& b)
      : slots(upload(b.slots)),
        tables(upload(b.tables)),
        row0(upload(b.row0)),
        new_tokens(upload(b.new_tokens)),
        context(upload(b.context)) {
    pb.slot_mapping = slots->as<std::int64_t>();
    pb.block_tables = tables->as<std::int32_t>();
    pb.row0 = row0->as<std::int32_t>();
    pb.new_tokens = new_tokens->as<std::int32_t>();
    pb.context = context->as<std::int32_t>();
    pb.num_seqs = b.num_seqs();
    pb.rows = b.rows;
    pb.max_blocks = b.max_blocks;
    pb.max_new = b.max_new;
    pb.max_context = b.max_context;
  }
};

float tol_rel(DType t) { return t == DType::kF32 ? 1e-4f : 2e-3f; }
float tol_abs(DType t) { return t == DType::kF32 ? 1e-5f : 1e-4f; }

using Spec = std::vector<std::pair<int, int>>;

// paged_attention_cuda against paged_attention_ref on random pools (bf16: the reference reads
// the rounded values the GPU pool holds).
// shift: the pools start that many elements past a 16-byte boundary (the kernels must then
// not use 16-byte loads).
void check_paged_attention(const Spec& spec, std::int64_t bs, std::int64_t qh, std::int64_t kvh,
                           std::int64_t dim, DType t, unsigned seed, std::size_t shift = 0) {
  SCOPED_TRACE(std::string(name(t)) + " dim " + std::to_string(dim) + " q_heads " +
               std::to_string(qh) + " kv_heads " + std::to_string(kvh) + " block " +
               std::to_string(bs) + " shift " + std::to_string(shift));
  const Batch b = make_batch(spec, bs, 3, seed);
  const auto seqs = b.seqs();
  const float scale = 1.f / std::sqrt(static_cast<float>(dim));
  const std::size_t pool_n = static_cast<std::size_t>(b.num_blocks * kvh * bs * dim);
  auto kp = random_vector(pool_n, seed + 1), vp = random_vector(pool_n, seed + 2);
  round_to(kp, t);
  round_to(vp, t);
  auto q = random_vector(static_cast<std::size_t>(b.rows * qh * dim), seed + 3);
  std::vector<float> ref(q.size(), 0.f);
  kernels::paged_attention_ref(q.data(), kp.data(), vp.data(), seqs.data(), b.num_seqs(), qh, kvh,
                               dim, bs, scale, ref.data());

  DevBatch db(b);
  auto dq = upload(q);
  const std::size_t pad = shift * static_cast<std::size_t>(kernels::dtype_bytes(t));
  auto shifted = [&](const std::vector<float>& v) {
    std::vector<unsigned char> bytes = pool_bytes(v, t);
    bytes.insert(bytes.begin(), pad, 0);
    return bytes;
  };
  auto dk = upload(shifted(kp)), dv = upload(shifted(vp));
  auto dout = upload(std::vector<float>(q.size(), 0.f));
  const void* kpool = static_cast<const unsigned char*>(dk->p) + pad;
  const void* vpool = static_cast<const unsigned char*>(dv->p) + pad;
  const auto st = kernels::paged_attention_cuda(dq->as<float>(), kpool, vpool, t, db.pb, qh, kvh,
                                                dim, bs, scale, dout->as<float>(), nullptr);
  ASSERT_TRUE(st.ok) << st.message;
  const auto got = download<float>(*dout, q.size());
  EXPECT_EQ(count_mismatches(got, ref, static_cast<std::size_t>(b.used_rows * qh * dim),
                             tol_rel(t), tol_abs(t), "paged_attention_cuda"),
            0);
}

const Spec kDecodeSpec = {{0, 1},  {1, 1},   {15, 1},  {16, 1}, {17, 1},
                          {100, 1}, {500, 0}, {1000, 1}, {4095, 1}};
const Spec kPrefillSpec = {{0, 37}, {50, 20}, {300, 1}, {17, 64}, {500, 0}, {1000, 33}};

TEST(PagedAttentionCuda, DecodeGqa4Dim128) {
  TPP_SKIP_WITHOUT_GPU();
  for (DType t : {DType::kF32, DType::kBF16}) check_paged_attention(kDecodeSpec, 16, 32, 8, 128, t, 1);
}

TEST(PagedAttentionCuda, DecodeNoGqaDim64) {
  TPP_SKIP_WITHOUT_GPU();
  for (DType t : {DType::kF32, DType::kBF16}) check_paged_attention(kDecodeSpec, 16, 4, 4, 64, t, 2);
}

TEST(PagedAttentionCuda, DecodeFewLongSequencesSplitTheContext) {
  TPP_SKIP_WITHOUT_GPU();
  for (DType t : {DType::kF32, DType::kBF16}) {
    check_paged_attention({{4095, 1}, {3000, 1}}, 16, 8, 2, 128, t, 3);
    check_paged_attention({{4000, 1}}, 16, 2, 1, 64, t, 4);
  }
}

TEST(PagedAttentionCuda, DecodeLargeGroupsAndUnusualDims) {
  TPP_SKIP_WITHOUT_GPU();
  for (DType t : {DType::kF32, DType::kBF16}) {
    check_paged_attention(kDecodeSpec, 16, 16, 1, 128, t, 5);  // group 16: two head chunks
    check_paged_attention(kDecodeSpec, 16, 24, 8, 256, t, 6);  // group 3, dim 256
    check_paged_attention(kDecodeSpec, 7, 6, 2, 36, t, 7);     // bf16: no 16-byte vectors
    check_paged_attention(kDecodeSpec, 5, 10, 2, 33, t, 8);    // odd dim, group 5
    check_paged_attention(kDecodeSpec, 16, 8, 8, 200, t, 9);
    check_paged_attention(kDecodeSpec, 16, 32, 8, 128, t, 15, 1);  // pools not 16-byte aligned
  }
}

TEST(PagedAttentionCuda, PrefillGqa4Dim128) {
  TPP_SKIP_WITHOUT_GPU();
  for (DType t : {DType::kF32, DType::kBF16}) check_paged_attention(kPrefillSpec, 16, 32, 8, 128, t, 10);
}

TEST(PagedAttentionCuda, PrefillOtherShapes) {
  TPP_SKIP_WITHOUT_GPU();
  for (DType t : {DType::kF32, DType::kBF16}) {
    check_paged_attention(kPrefillSpec, 16, 4, 4, 64, t, 11);
    check_paged_attention(kPrefillSpec, 16, 8, 2, 256, t, 12);  // > 48 KiB of shared memory
    check_paged_attention(kPrefillSpec, 5, 6, 2, 33, t, 13);
    check_paged_attention({{0, 300}, {2000, 70}}, 16, 40, 1, 128, t, 14);  // group 40 > 32 rows
    check_paged_attention(kPrefillSpec, 16, 8, 2, 64, t, 16, 3);  // pools not 16-byte aligned
  }
}

TEST(KvWriteCuda, MatchesCpuReference) {
  TPP_SKIP_WITHOUT_GPU();
  for (DType t : {DType::kF32, DType::kBF16})
    for (std::int64_t dim : {128, 64, 33}) {
      SCOPED_TRACE(std::string(name(t)) + " dim " + std::to_string(dim));
      const std::int64_t heads = 4, bs = 16;
      const Batch b = make_batch({{0, 20}, {33, 1}, {100, 17}, {7, 0}}, bs, 3, 21);
      const auto seqs = b.seqs();
      const std::size_t pool_n = static_cast<std::size_t>(b.num_blocks * heads * bs * dim);
      auto kp = random_vector(pool_n, 22), vp = random_vector(pool_n, 23);  // what was there
      round_to(kp, t);
      round_to(vp, t);
      const auto k = random_vector(static_cast<std::size_t>(b.rows * heads * dim), 24);
      const auto v = random_vector(k.size(), 25);
      auto dk = upload(pool_bytes(kp, t)), dv = upload(pool_bytes(vp, t));
      kernels::kv_write_ref(k.data(), v.data(), kp.data(), vp.data(), seqs.data(), b.num_seqs(),
                            heads, dim, bs);
      round_to(kp, t);
      round_to(vp, t);
      DevBatch db(b);
      auto dkin = upload(k), dvin = upload(v);
      const auto st = kernels::kv_write_cuda(dkin->as<float>(), dvin->as<float>(), dk->p, dv->p, t,
                                             db.pb.slot_mapping, b.rows, heads, dim, bs, nullptr);
      ASSERT_TRUE(st.ok) << st.message;
      const auto gk = pool_floats(download<unsigned char>(*dk, dk->bytes), t);
      const auto gv = pool_floats(download<unsigned char>(*dv, dv->bytes), t);
      EXPECT_EQ(count_mismatches(gk, kp, pool_n, 0.f, 0.f, "kv_write_cuda K pool"), 0);
      EXPECT_EQ(count_mismatches(gv, vp, pool_n, 0.f, 0.f, "kv_write_cuda V pool"), 0);
    }
}

TEST(LatentWriteCuda, MatchesCpuReference) {
  TPP_SKIP_WITHOUT_GPU();
  for (DType t : {DType::kF32, DType::kBF16})
    for (std::int64_t width : {576, 42}) {
      SCOPED_TRACE(std::string(name(t)) + " width " + std::to_string(width));
      const std::int64_t bs = 16;
      const Batch b = make_batch({{0, 20}, {33, 1}, {100, 17}, {7, 0}}, bs, 3, 31);
      const auto seqs = b.seqs();
      const std::size_t pool_n = static_cast<std::size_t>(b.num_blocks * bs * width);
      auto pool = random_vector(pool_n, 32);
      round_to(pool, t);
      const auto lat = random_vector(static_cast<std::size_t>(b.rows * width), 33);
      auto dp = upload(pool_bytes(pool, t));
      kernels::latent_write_ref(lat.data(), pool.data(), seqs.data(), b.num_seqs(), width, bs);
      round_to(pool, t);
      DevBatch db(b);
      auto dl = upload(lat);
      const auto st = kernels::latent_write_cuda(dl->as<float>(), dp->p, t, db.pb.slot_mapping,
                                                 b.rows, width, nullptr);
      ASSERT_TRUE(st.ok) << st.message;
      const auto got = pool_floats(download<unsigned char>(*dp, dp->bytes), t);
      EXPECT_EQ(count_mismatches(got, pool, pool_n, 0.f, 0.f, "latent_write_cuda"), 0);
    }
}

void check_mla(const Spec& spec, std::int64_t bs, std::int64_t heads, std::int64_t lora,
               std::int64_t rope, DType t, unsigned seed) {
  SCOPED_TRACE(std::string(name(t)) + " heads " + std::to_string(heads) + " lora " +
               std::to_string(lora) + " rope " + std::to_string(rope));
  const Batch b = make_batch(spec, bs, 3, seed);
  const auto seqs = b.seqs();
  const std::int64_t width = lora + rope;
  const float scale = 1.f / std::sqrt(static_cast<float>(width));
  auto pool = random_vector(static_cast<std::size_t>(b.num_blocks * bs * width), seed + 1);
  round_to(pool, t);
  auto ql = random_vector(static_cast<std::size_t>(b.rows * heads * lora), seed + 2);
  auto qp = random_vector(static_cast<std::size_t>(b.rows * heads * rope), seed + 3);
  std::vector<float> ref(static_cast<std::size_t>(b.rows * heads * lora), 0.f);
  kernels::mla_attention_ref(ql.data(), qp.data(), pool.data(), seqs.data(), b.num_seqs(), heads,
                             lora, rope, bs, scale, ref.data());
  DevBatch db(b);
  auto dql = upload(ql), dqp = upload(qp), dp = upload(pool_bytes(pool, t));
  auto dout = upload(std::vector<float>(ref.size(), 0.f));
  const auto st = kernels::mla_attention_cuda(dql->as<float>(), dqp->as<float>(), dp->p, t, db.pb,
                                              heads, lora, rope, bs, scale, dout->as<float>(),
                                              nullptr);
  ASSERT_TRUE(st.ok) << st.message;
  const auto got = download<float>(*dout, ref.size());
  EXPECT_EQ(count_mismatches(got, ref, static_cast<std::size_t>(b.used_rows * heads * lora),
                             tol_rel(t), tol_abs(t), "mla_attention_cuda"),
            0);
}

TEST(MlaAttentionCuda, DecodeDeepSeekShapes) {
  TPP_SKIP_WITHOUT_GPU();
  for (DType t : {DType::kF32, DType::kBF16}) {
    check_mla(kDecodeSpec, 16, 16, 512, 64, t, 41);
    check_mla({{4095, 1}}, 16, 16, 512, 64, t, 42);  // one long sequence: split context
  }
}

TEST(MlaAttentionCuda, PrefillAndSmallShapes) {
  TPP_SKIP_WITHOUT_GPU();
  for (DType t : {DType::kF32, DType::kBF16}) {
    check_mla(kPrefillSpec, 16, 8, 128, 32, t, 43);
    check_mla(kPrefillSpec, 5, 3, 36, 6, t, 44);  // width 42: no 16-byte vectors
    check_mla(kDecodeSpec, 16, 40, 64, 16, t, 45);  // heads > 16: head chunks
    check_mla(kPrefillSpec, 16, 16, 512, 64, t, 46);
  }
}

#endif  // TPP_HAVE_CUDA

}  // namespace
}  // namespace tpp
