// Every CUDA kernel against its CPU reference. The GPU comparisons skip, visibly, where no GPU
// is present (built without CUDA, or no device); the CPU reference checks always run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda_ops.h"
#include "kernels/device.h"
#include "kernels/ops.h"
#include "kernels/rmsnorm.h"
#include "kernels/seeded.h"

namespace tpp {
namespace {

std::vector<float> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(RmsNormRef, UnitRmsRowsAndWeights) {
  // A row of all 2s has rms 2: the output is the weight itself (eps aside).
  std::vector<float> x(8, 2.f), w = {1, 2, 3, 4, 5, 6, 7, 8}, y(8);
  kernels::rmsnorm_ref(x.data(), w.data(), y.data(), 1, 8, 0.f);
  for (int c = 0; c < 8; ++c) EXPECT_FLOAT_EQ(y[c], w[c]);
}

TEST(RmsNormRef, OutputHasUnitRms) {
  const int rows = 3, cols = 1000;
  auto x = random_vector(rows * cols, 1);
  std::vector<float> w(cols, 1.f), y(rows * cols);
  kernels::rmsnorm_ref(x.data(), w.data(), y.data(), rows, cols, 1e-6f);
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int c = 0; c < cols; ++c) ss += y[r * cols + c] * y[r * cols + c];
    EXPECT_NEAR(std::sqrt(ss / cols), 1.0, 1e-4);
  }
}

TEST(RmsNormCuda, MatchesCpuReference) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
  const int rows = 37, cols = 4096;
  auto x = random_vector(rows * cols, 2), w = random_vector(cols, 3);
  std::vector<float> ref(rows * cols), got(rows * cols);
  kernels::rmsnorm_ref(x.data(), w.data(), ref.data(), rows, cols, 1e-6f);
  auto st = kernels::rmsnorm_cuda_host(x.data(), w.data(), got.data(), rows, cols, 1e-6f);
  ASSERT_TRUE(st.ok) << st.message;
  int wrong = 0;
  for (int k = 0; k < rows * cols; ++k)  // llm.c's tolerance: tol + |ref| x eps
    wrong += std::fabs(got[k] - ref[k]) > 1e-5f + std::fabs(ref[k]) * 1e-4f;
  EXPECT_EQ(wrong, 0);
}

// ---- Helpers of the comparisons below --------------------------------------------------------

using kernels::bf16_t;
using kernels::DType;
using kernels::fp8_t;

// Counts the elements outside atol + rtol x |ref|, printing the first few with their index.
::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& ref,
                                     float atol, float rtol) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << "sizes " << got.size() << " and " << ref.size();
  std::size_t wrong = 0;
  std::string first;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const bool same_nan = std::isnan(got[i]) && std::isnan(ref[i]);
    if (same_nan || std::fabs(got[i] - ref[i]) <= atol + rtol * std::fabs(ref[i])) continue;
    if (++wrong <= 5)
      first += "\n  [" + std::to_string(i) + "] got " + std::to_string(got[i]) + ", expected " +
               std::to_string(ref[i]);
  }
  if (wrong == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << wrong << " of " << got.size() << " differ:" << first;
}

template <typename T>
::testing::AssertionResult all_equal(const std::vector<T>& got, const std::vector<T>& ref) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << "sizes " << got.size() << " and " << ref.size();
  std::size_t wrong = 0;
  std::string first;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i] == ref[i]) continue;
    if (++wrong <= 5)
      first += "\n  [" + std::to_string(i) + "] got " + std::to_string(got[i]) + ", expected " +
               std::to_string(ref[i]);
  }
  if (wrong == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << wrong << " of " << got.size() << " differ:" << first;
}

float bits_to_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
[[maybe_unused]] float bf16_value(bf16_t b) { return bits_to_float(static_cast<std::uint32_t>(b) << 16); }
[[maybe_unused]] bf16_t bf16_bits(float x) { return static_cast<bf16_t>(float_bits(kernels::bf16_round(x)) >> 16); }

// float8 e4m3 (OCP): sign, 4 exponent bits (bias 7), 3 mantissa bits; S.1111.111 is NaN.
float fp8_value(fp8_t b) {
  const int e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return std::nanf("");
  const float a = e == 0 ? std::ldexp(static_cast<float>(m), -9)
                         : std::ldexp(1.0f + static_cast<float>(m) / 8, e - 7);
  return (b & 0x80) ? -a : a;
}

// The host copy of the CPU generator of executor/weights.cc (seeded_shard), for a SeedShard.
[[maybe_unused]] std::vector<float> seeded_shard_ref(const kernels::SeedShard& sh) {
  std::vector<float> out(static_cast<std::size_t>(sh.count * sh.rows * sh.cols));
  std::size_t k = 0;
  for (std::int64_t e = 0; e < sh.count; ++e)
    for (std::int64_t r = 0; r < sh.rows; ++r)
      for (std::int64_t c = 0; c < sh.cols; ++c, ++k) {
        const std::int64_t gr = sh.row0 + r, gc = sh.col0 + c, ge = sh.expert0 + e;
        if (gr >= sh.global_rows) {
          out[k] = 0;
        } else if (sh.ones) {
          out[k] = 1;
        } else {
          const auto index =
              static_cast<std::uint64_t>((ge * sh.tensor_rows + gr) * sh.tensor_cols + gc);
          out[k] = kernels::seeded_value(sh.name_hash, index, sh.scale);
        }
      }
  return out;
}

// ---- CPU references that always run -----------------------------------------------------------

TEST(RopeRef, InvFreqTableEqualsRopeNeoxRef) {
  const std::int64_t rows = 7, heads = 3, stride = 96, offset = 16, rot = 64;
  const float theta = 10000.f;
  auto x = random_vector(rows * heads * stride, 11), y = x;
  std::vector<std::int64_t> pos = {0, 1, 2, 5, 17, 64, 99};
  std::vector<float> inv(rot / 2);
  kernels::rope_inv_freq(theta, rot, inv.data());
  kernels::rope_neox_ref(x.data(), pos.data(), rows, heads, stride, offset, rot, theta);
  kernels::rope_ref(y.data(), pos.data(), rows, heads, stride, offset, rot, inv.data(), 1.0f, true);
  // The table rounds theta^(-2i/rot) to float: the angles differ by pos x 2^-24 at most.
  EXPECT_TRUE(all_close(y, x, 2e-5f, 2e-5f));
}

TEST(RopeRef, InterleavedPairsKeepTheirNorm) {
  const std::int64_t rows = 5, heads = 2, stride = 40, offset = 8, rot = 32;
  auto x = random_vector(rows * heads * stride, 12), y = x;
  std::vector<std::int64_t> pos = {0, 3, 100, 4095, 70000};
  std::vector<float> inv(rot / 2);
  kernels::rope_inv_freq(10000.f, rot, inv.data());
  kernels::rope_ref(y.data(), pos.data(), rows, heads, stride, offset, rot, inv.data(), 1.0f,
                    false);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t h = 0; h < heads; ++h) {
      const float* a = x.data() + (r * heads + h) * stride;
      const float* b = y.data() + (r * heads + h) * stride;
      for (std::int64_t c = 0; c < stride; ++c)  // outside the rotated part: unchanged
        if (c < offset || c >= offset + rot) {
          EXPECT_EQ(a[c], b[c]) << r << " " << h << " " << c;
        }
      for (std::int64_t i = 0; i < rot / 2; ++i) {
        const float* pa = a + offset + 2 * i;
        const float* pb = b + offset + 2 * i;
        EXPECT_NEAR(std::hypot(pa[0], pa[1]), std::hypot(pb[0], pb[1]), 1e-5f) << r << " " << i;
      }
      if (pos[r] == 0) {  // position 0: the identity
        for (std::int64_t c = 0; c < stride; ++c) EXPECT_FLOAT_EQ(a[c], b[c]);
      }
    }
}

TEST(YarnRef, InvFreqInterpolatesOnlyTheLowFrequencies) {
  const std::int64_t rot = 64;
  std::vector<float> plain(rot / 2), one(rot / 2), yarn(rot / 2);
  kernels::rope_inv_freq(10000.f, rot, plain.data());
  kernels::yarn_inv_freq(10000.f, rot, 1.0f, 4096, 32.f, 1.f, one.data());
  EXPECT_TRUE(all_close(one, plain, 0.f, 1e-6f)) << "factor 1";
  // DeepSeek-V3: the correction range is dims [floor 10.47, ceil 22.5] = [10, 23].
  kernels::yarn_inv_freq(10000.f, rot, 40.f, 4096, 32.f, 1.f, yarn.data());
  for (std::int64_t i = 0; i < rot / 2; ++i) {
    if (i <= 10)
      EXPECT_NEAR(yarn[i], plain[i], 1e-6f * plain[i]) << i;  // high frequencies: extrapolated
    else if (i >= 23)
      EXPECT_NEAR(yarn[i], plain[i] / 40, 1e-6f * plain[i] / 40) << i;  // interpolated
    else {
      EXPECT_LT(yarn[i], plain[i]) << i;
      EXPECT_GT(yarn[i], plain[i] / 40) << i;
    }
  }
}

TEST(YarnRef, Mscale) {
  EXPECT_FLOAT_EQ(kernels::yarn_mscale(40.f, 1.f, 1.f), 1.0f);
  const double l = std::log(40.0);
  const double expected = (0.1 * 0.707 * l + 1) / (0.1 * 1.0 * l + 1);
  EXPECT_NEAR(kernels::yarn_mscale(40.f, 0.707f, 1.f), expected, 1e-6);
  EXPECT_LT(kernels::yarn_mscale(40.f, 0.707f, 1.f), 1.0f);
  EXPECT_FLOAT_EQ(kernels::yarn_mscale(1.f, 0.707f, 1.f), 1.0f);  // no scaling: 1
}

TEST(RoundRef, Bf16KnownValues) {
  EXPECT_EQ(kernels::bf16_round(1.0f), 1.0f);
  EXPECT_EQ(kernels::bf16_round(1.0f + 0x1.0p-8f), 1.0f);  // a tie: to the even 1.0
  EXPECT_EQ(kernels::bf16_round(1.0f + 3 * 0x1.0p-8f), 1.0f + 0x1.0p-6f);  // a tie: up to even
  EXPECT_EQ(kernels::bf16_round(1.0f + 0x1.0p-8f + 0x1.0p-20f), 1.0f + 0x1.0p-7f);  // past half
  EXPECT_EQ(kernels::bf16_round(3.14159f), 3.140625f);
  EXPECT_EQ(kernels::bf16_round(-3.14159f), -3.140625f);
  EXPECT_EQ(kernels::bf16_round(INFINITY), INFINITY);
  EXPECT_TRUE(std::isnan(kernels::bf16_round(NAN)));
}

TEST(RoundRef, Fp8E4m3KnownValues) {
  EXPECT_EQ(kernels::fp8_e4m3_round(448.f), 448.f);
  EXPECT_EQ(kernels::fp8_e4m3_round(500.f), 448.f);  // saturating
  EXPECT_EQ(kernels::fp8_e4m3_round(-1e9f), -448.f);
  EXPECT_EQ(kernels::fp8_e4m3_round(0.1f), 0.1015625f);
  EXPECT_EQ(kernels::fp8_e4m3_round(0x1.0p-9f), 0x1.0p-9f);  // the smallest subnormal
  EXPECT_EQ(kernels::fp8_e4m3_round(0x1.0p-10f), 0.f);       // a tie: to the even 0
  EXPECT_EQ(kernels::fp8_e4m3_round(1.0625f), 1.0f);         // a tie: to the even 1.0
  EXPECT_EQ(kernels::fp8_e4m3_round(1.1875f), 1.25f);        // a tie: to the even 1.25
  EXPECT_EQ(kernels::fp8_e4m3_round(1.0f), 1.0f);
  // Every finite e4m3 value is its own rounding.
  for (int b = 0; b < 256; ++b) {
    const float v = fp8_value(static_cast<fp8_t>(b));
    if (!std::isnan(v)) {
      EXPECT_EQ(kernels::fp8_e4m3_round(v), v) << b;
    }
  }
}

TEST(MoeRef, PermuteAndCombineHandWorked) {
  // 3 rows, k 2; this rank holds experts 1 and 2 (first 1, local 2); expert 3 is elsewhere.
  const std::vector<std::int32_t> ids = {2, 1, 1, 2, 3, 1};
  std::vector<std::int32_t> offsets(3), src_row(6, -7), where(6);
  kernels::moe_permute_ref(ids.data(), 3, 2, 1, 2, offsets.data(), src_row.data(), where.data());
  EXPECT_EQ(offsets, (std::vector<std::int32_t>{0, 3, 5}));
  // Expert 1: (0, 1), (1, 0), (2, 1); expert 2: (0, 0), (1, 1).
  EXPECT_EQ(std::vector<std::int32_t>(src_row.begin(), src_row.begin() + 5),
            (std::vector<std::int32_t>{0, 1, 2, 0, 1}));
  EXPECT_EQ(where, (std::vector<std::int32_t>{3, 0, 1, 4, -1, 2}));
  const std::vector<float> y = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};  // 5 pairs x 2 columns
  const std::vector<float> w = {0.5f, 0.25f, 0.75f, 0.125f, 1.0f, 0.5f};
  std::vector<float> out(6, -1.f);
  kernels::moe_combine_ref(y.data(), where.data(), w.data(), 3, 2, 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{3.75f, 4.5f, 3.375f, 4.25f, 2.5f, 3.0f}));
}

TEST(TopkRef, TiesGoToTheLowerIndex) {
  const std::vector<float> l = {1, 3, 3, 0, 3};
  std::vector<std::int32_t> ids(2);
  std::vector<float> w(2);
  kernels::topk_softmax_ref(l.data(), 1, 5, 2, ids.data(), w.data());
  EXPECT_EQ(ids, (std::vector<std::int32_t>{1, 2}));
  EXPECT_FLOAT_EQ(w[0], 0.5f);
  EXPECT_FLOAT_EQ(w[1], 0.5f);
}

TEST(SeededRef, UniformInRangeWithMeanZero) {
  const std::uint64_t h = kernels::splitmix64(42);
  double sum = 0;
  float lo = 1, hi = -1;
  for (std::uint64_t i = 0; i < 100000; ++i) {
    const float v = kernels::seeded_value(h, i, 0.5f);
    ASSERT_GE(v, -0.5f) << i;
    ASSERT_LT(v, 0.5f) << i;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    sum += v;
    if (i < 100) {
      EXPECT_EQ(v, kernels::seeded_value(h, i, 0.5f));  // a pure function
    }
  }
  EXPECT_NEAR(sum / 100000, 0.0, 0.005);  // the mean's sd: 0.5 / sqrt(3 x 100000) = 0.0009
  EXPECT_LT(lo, -0.49f);
  EXPECT_GT(hi, 0.49f);
  EXPECT_EQ(kernels::seeded_value(h, 7, 2.0f), 4 * kernels::seeded_value(h, 7, 0.5f));
}

// ---- GPU against the references ---------------------------------------------------------------
// Without CUDA the bodies are compiled out (device_count() is then 0, so every test skips).

#if defined(TPP_HAVE_CUDA)

// Device memory that frees itself, allocated with the host helpers of kernels/host.cu.
struct DeviceBuffer {
  void* p = nullptr;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { kernels::device_free(p); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// Allocates bytes (at least 1) on the device; fails the test on error.
#define TPP_ALLOC(buf, bytes)                                                    \
  do {                                                                           \
    auto st_ = kernels::device_alloc(&(buf).p, std::max<std::size_t>((bytes), 1)); \
    ASSERT_TRUE(st_.ok) << st_.message;                                          \
  } while (0)
#define TPP_UPLOAD(buf, vec)                                                          \
  do {                                                                                \
    TPP_ALLOC(buf, (vec).size() * sizeof((vec)[0]));                                  \
    auto st_ = kernels::to_device((buf).p, (vec).data(), (vec).size() * sizeof((vec)[0])); \
    ASSERT_TRUE(st_.ok) << st_.message;                                               \
  } while (0)
#define TPP_DOWNLOAD(vec, buf)                                                      \
  do {                                                                              \
    auto st_ = kernels::to_host((vec).data(), (buf).p, (vec).size() * sizeof((vec)[0])); \
    ASSERT_TRUE(st_.ok) << st_.message;                                             \
  } while (0)
#define TPP_OK(call)                               \
  do {                                             \
    auto st_ = (call);                             \
    ASSERT_TRUE(st_.ok) << st_.message;            \
    auto sync_ = kernels::device_sync();           \
    ASSERT_TRUE(sync_.ok) << sync_.message;        \
  } while (0)

#endif  // TPP_HAVE_CUDA

TEST(ConvertCuda, Bf16BothWays) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  for (std::int64_t n : {1, 4095, 4096}) {
    auto x = random_vector(static_cast<std::size_t>(n), 20);
    if (n > 8) {  // ties, specials, large and tiny values
      x[0] = 1.0f + 0x1.0p-8f;
      x[1] = 1.0f + 3 * 0x1.0p-8f;
      x[2] = INFINITY;
      x[3] = -INFINITY;
      x[4] = 3e38f;
      x[5] = 1e-40f;
      x[6] = -0.0f;
    }
    DeviceBuffer dx, dy, dz;
    TPP_UPLOAD(dx, x);
    TPP_ALLOC(dy, n * sizeof(bf16_t));
    TPP_ALLOC(dz, n * sizeof(float));
    TPP_OK(kernels::f32_to_bf16_cuda(dx.as<float>(), dy.as<bf16_t>(), n, nullptr));
    TPP_OK(kernels::bf16_to_f32_cuda(dy.as<bf16_t>(), dz.as<float>(), n, nullptr));
    std::vector<bf16_t> got(static_cast<std::size_t>(n)), want(got.size());
    std::vector<float> back(got.size()), want_back(got.size());
    TPP_DOWNLOAD(got, dy);
    TPP_DOWNLOAD(back, dz);
    for (std::size_t i = 0; i < got.size(); ++i) {
      want[i] = bf16_bits(x[i]);
      want_back[i] = kernels::bf16_round(x[i]);
    }
    EXPECT_TRUE(all_equal(got, want)) << "n " << n;
    EXPECT_TRUE(all_close(back, want_back, 0.f, 0.f)) << "n " << n;
  }
#endif
}

TEST(QuantizeFp8Ref, ScaleFromTheLargestValue) {
  std::vector<float> x = {1.0f, -896.0f, 0.5f, 0.0f}, y(4);
  EXPECT_FLOAT_EQ(kernels::quantize_fp8_dynamic_ref(x.data(), 4, y.data()), 2.0f);
  EXPECT_FLOAT_EQ(y[1], -448.0f);  // the largest value lands on fp8's largest
  EXPECT_FLOAT_EQ(y[0], 0.5f);
  EXPECT_FLOAT_EQ(y[3], 0.0f);
  std::vector<float> zeros(3, 0.0f), z(3);
  EXPECT_FLOAT_EQ(kernels::quantize_fp8_dynamic_ref(zeros.data(), 3, z.data()), 1.0f);
}

TEST(ConvertCuda, QuantizeFp8DynamicAndFill) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  for (std::int64_t n : {1, 4095, 4096}) {
    auto x = random_vector(static_cast<std::size_t>(n), 23);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] *= (i % 2 == 0) ? 50.f : 0.02f;
    std::vector<float> want(x.size());
    const float s = kernels::quantize_fp8_dynamic_ref(x.data(), n, want.data());
    DeviceBuffer dx, dy, damax, dscale;
    TPP_UPLOAD(dx, x);
    TPP_ALLOC(dy, n);
    TPP_ALLOC(damax, 4);
    TPP_ALLOC(dscale, 4);
    TPP_OK(kernels::absmax_cuda(dx.as<float>(), n, damax.as<float>(), nullptr));
    TPP_OK(kernels::quantize_fp8_dynamic_cuda(dx.as<float>(), n, damax.as<float>(),
                                              dy.as<fp8_t>(), dscale.as<float>(), nullptr));
    std::vector<fp8_t> bits(static_cast<std::size_t>(n));
    std::vector<float> scale(1);
    TPP_DOWNLOAD(bits, dy);
    TPP_DOWNLOAD(scale, dscale);
    EXPECT_FLOAT_EQ(scale[0], s) << "n " << n;
    std::vector<float> got(bits.size());
    for (std::size_t i = 0; i < bits.size(); ++i) got[i] = fp8_value(bits[i]);
    EXPECT_TRUE(all_close(got, want, 0.f, 0.f)) << "n " << n;
    TPP_OK(kernels::fill_cuda(dx.as<float>(), n, 2.5f, nullptr));
    std::vector<float> filled(static_cast<std::size_t>(n));
    TPP_DOWNLOAD(filled, dx);
    EXPECT_TRUE(all_close(filled, std::vector<float>(filled.size(), 2.5f), 0.f, 0.f));
  }
#endif
}

TEST(ConvertCuda, Fp8BothWays) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  const float scale = 0.37f;
  for (std::int64_t n : {1, 4095, 4096}) {
    auto x = random_vector(static_cast<std::size_t>(n), 21);
    for (std::size_t i = 0; i < x.size(); ++i)
      x[i] *= (i % 3 == 0) ? 100.f : (i % 3 == 1) ? 0.01f : 1.f;
    if (n > 4) {
      x[0] = 1000.f;  // saturates
      x[1] = -1000.f;
      x[2] = 0x1.0p-10f * scale;
    }
    DeviceBuffer dx, dy;
    TPP_UPLOAD(dx, x);
    TPP_ALLOC(dy, n);
    TPP_OK(kernels::f32_to_fp8_cuda(dx.as<float>(), dy.as<fp8_t>(), n, scale, nullptr));
    std::vector<fp8_t> bits(static_cast<std::size_t>(n));
    TPP_DOWNLOAD(bits, dy);
    std::vector<float> got(bits.size()), want(bits.size());
    for (std::size_t i = 0; i < bits.size(); ++i) {
      got[i] = fp8_value(bits[i]);
      want[i] = kernels::fp8_e4m3_round(x[i] / scale);
    }
    EXPECT_TRUE(all_close(got, want, 0.f, 0.f)) << "n " << n;
  }
  // Every byte but the two NaNs back to float32 and bfloat16.
  std::vector<fp8_t> all;
  for (int b = 0; b < 256; ++b)
    if ((b & 0x7f) != 0x7f) all.push_back(static_cast<fp8_t>(b));
  const auto n = static_cast<std::int64_t>(all.size());
  DeviceBuffer db, df, dh;
  TPP_UPLOAD(db, all);
  TPP_ALLOC(df, n * sizeof(float));
  TPP_ALLOC(dh, n * sizeof(bf16_t));
  TPP_OK(kernels::fp8_to_f32_cuda(db.as<fp8_t>(), df.as<float>(), n, scale, nullptr));
  TPP_OK(kernels::fp8_to_bf16_cuda(db.as<fp8_t>(), dh.as<bf16_t>(), n, scale, nullptr));
  std::vector<float> f(all.size()), want_f(all.size());
  std::vector<bf16_t> h(all.size()), want_h(all.size());
  TPP_DOWNLOAD(f, df);
  TPP_DOWNLOAD(h, dh);
  for (std::size_t i = 0; i < all.size(); ++i) {
    want_f[i] = fp8_value(all[i]) * scale;
    want_h[i] = bf16_bits(want_f[i]);
  }
  EXPECT_TRUE(all_close(f, want_f, 0.f, 0.f));
  EXPECT_TRUE(all_equal(h, want_h));
#endif
}

TEST(ConvertCuda, Absmax) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  for (std::int64_t n : {1, 37, 4095, 1 << 20}) {
    auto x = random_vector(static_cast<std::size_t>(n), 22);
    x[static_cast<std::size_t>(n / 2)] = -9.5f;  // the largest magnitude, negative
    DeviceBuffer dx, dm;
    TPP_UPLOAD(dx, x);
    TPP_ALLOC(dm, sizeof(float));
    TPP_OK(kernels::absmax_cuda(dx.as<float>(), n, dm.as<float>(), nullptr));
    std::vector<float> got(1);
    TPP_DOWNLOAD(got, dm);
    float want = 0;
    for (float v : x) want = std::max(want, std::fabs(v));
    EXPECT_EQ(got[0], want) << "n " << n;
  }
#endif
}

TEST(SeededCuda, MatchesTheCpuGenerator) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  struct Case {
    const char* what;
    kernels::SeedShard sh;
    DType t;
    float fp8_scale;
  };
  kernels::SeedShard column;  // rows 100..136 of a 1000 x 4095 tensor
  column.name_hash = kernels::splitmix64(1);
  column.scale = 0.03f;
  column.rows = 37;
  column.cols = 4095;
  column.row0 = 100;
  column.global_rows = column.tensor_rows = 1000;
  column.tensor_cols = 4095;
  kernels::SeedShard row = column;  // columns 2048..4095 of a 37 x 4096 tensor
  row.name_hash = kernels::splitmix64(2);
  row.row0 = 0;
  row.global_rows = row.tensor_rows = 37;
  row.cols = 2048;
  row.col0 = 2048;
  row.tensor_cols = 4096;
  kernels::SeedShard vocab = column;  // the last vocabulary shard: 13 padding rows
  vocab.name_hash = kernels::splitmix64(3);
  vocab.scale = 1.7f;
  vocab.rows = 40;
  vocab.cols = 64;
  vocab.row0 = 80;
  vocab.global_rows = vocab.tensor_rows = 107;
  vocab.tensor_cols = 64;
  kernels::SeedShard experts = column;  // experts 3..5 of 8, each 37 x 129
  experts.name_hash = kernels::splitmix64(4);
  experts.count = 3;
  experts.expert0 = 3;
  experts.rows = 37;
  experts.cols = 129;
  experts.row0 = 37;
  experts.global_rows = experts.tensor_rows = 74;
  experts.tensor_cols = 129;
  kernels::SeedShard ones;  // a norm weight
  ones.name_hash = kernels::splitmix64(5);
  ones.ones = true;
  ones.rows = 4095;
  ones.cols = 1;
  ones.global_rows = ones.tensor_rows = 4095;
  ones.tensor_cols = 1;
  const Case cases[] = {
      {"column f32", column, DType::kF32, 1},   {"row f32", row, DType::kF32, 1},
      {"vocab f32", vocab, DType::kF32, 1},     {"experts f32", experts, DType::kF32, 1},
      {"ones f32", ones, DType::kF32, 1},       {"column bf16", column, DType::kBF16, 1},
      {"vocab bf16", vocab, DType::kBF16, 1},   {"experts fp8", experts, DType::kFP8, 0.03f / 448},
      {"vocab fp8", vocab, DType::kFP8, 0.01f}, {"ones bf16", ones, DType::kBF16, 1},
  };
  for (const Case& c : cases) {
    const std::vector<float> want = seeded_shard_ref(c.sh);
    const auto n = static_cast<std::int64_t>(want.size());
    DeviceBuffer d;
    TPP_ALLOC(d, n * kernels::dtype_bytes(c.t));
    TPP_OK(kernels::seeded_fill_cuda(c.sh, c.t, d.p, c.fp8_scale, nullptr));
    std::vector<float> got(want.size()), expect(want.size());
    if (c.t == DType::kF32) {
      TPP_DOWNLOAD(got, d);
      expect = want;
    } else if (c.t == DType::kBF16) {
      std::vector<bf16_t> b(want.size());
      TPP_DOWNLOAD(b, d);
      for (std::size_t i = 0; i < b.size(); ++i) {
        got[i] = bf16_value(b[i]);
        expect[i] = kernels::bf16_round(want[i]);
      }
    } else {
      std::vector<fp8_t> b(want.size());
      TPP_DOWNLOAD(b, d);
      for (std::size_t i = 0; i < b.size(); ++i) {
        got[i] = fp8_value(b[i]);
        expect[i] = kernels::fp8_e4m3_round(want[i] / c.fp8_scale);
      }
    }
    EXPECT_TRUE(all_close(got, expect, 0.f, 0.f)) << c.what;
  }
#endif
}

TEST(EmbeddingCuda, MatchesReferenceInEveryTableType) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  const std::int64_t vocab0 = 500, rows = 301;
  for (std::int64_t dim : {37, 4095, 4096}) {
    const std::vector<std::int64_t> tokens = {500, 0, 800, 801, 499, 650, 650, 1 << 30, 799};
    const auto n = static_cast<std::int64_t>(tokens.size());
    const auto table = random_vector(static_cast<std::size_t>(rows * dim), 30);
    const float fp8_scale = 0.01f;
    for (DType t : {DType::kF32, DType::kBF16, DType::kFP8}) {
      // The table's values as the kernel sees them, and its bytes.
      std::vector<float> seen(table.size());
      std::vector<unsigned char> bytes(table.size() *
                                       static_cast<std::size_t>(kernels::dtype_bytes(t)));
      for (std::size_t i = 0; i < table.size(); ++i) {
        if (t == DType::kF32) {
          seen[i] = table[i];
          std::memcpy(bytes.data() + 4 * i, &table[i], 4);
        } else if (t == DType::kBF16) {
          const bf16_t b = bf16_bits(table[i]);
          seen[i] = bf16_value(b);
          std::memcpy(bytes.data() + 2 * i, &b, 2);
        } else {
          const float q = kernels::fp8_e4m3_round(table[i] / fp8_scale);
          fp8_t b = 0;
          for (int k = 0; k < 256; ++k)
            if (fp8_value(static_cast<fp8_t>(k)) == q) {
              b = static_cast<fp8_t>(k);
              break;
            }
          seen[i] = fp8_value(b) * fp8_scale;
          bytes[i] = b;
        }
      }
      std::vector<float> want(static_cast<std::size_t>(n * dim)), got(want.size());
      kernels::embedding_ref(tokens.data(), n, seen.data(), vocab0, rows, dim, want.data());
      DeviceBuffer dt, dtab, dout;
      TPP_UPLOAD(dt, tokens);
      TPP_UPLOAD(dtab, bytes);
      TPP_ALLOC(dout, want.size() * sizeof(float));
      TPP_OK(kernels::embedding_cuda(dt.as<std::int64_t>(), n, dtab.p, t, fp8_scale, vocab0, rows,
                                     dim, dout.as<float>(), nullptr));
      TPP_DOWNLOAD(got, dout);
      EXPECT_TRUE(all_close(got, want, 0.f, 0.f))
          << "dim " << dim << " type " << static_cast<int>(t);
    }
  }
#endif
}

TEST(AddRmsNormCuda, MatchesReference) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  // 40000: past the register-cached vector path; 70000: past the scalar one.
  for (std::int64_t rows : {1, 37, 300})
    for (std::int64_t cols : {4095, 4096, 14336, 40000, 70000}) {
      if (rows == 300 && cols > 14336) continue;
      for (int mode = 0; mode < 3; ++mode) {  // 0: residual; 1: no residual; 2: in place, x = y
        const auto n = static_cast<std::size_t>(rows * cols);
        const auto x = random_vector(n, 40), res0 = random_vector(n, 41);
        const auto w = random_vector(static_cast<std::size_t>(cols), 42);
        std::vector<float> want_y(n), want_res = res0;
        kernels::add_rmsnorm_ref(x.data(), mode == 0 ? want_res.data() : nullptr, w.data(),
                                 want_y.data(), rows, cols, 1e-6f);
        DeviceBuffer dx, dr, dw, dy;
        TPP_UPLOAD(dx, x);
        TPP_UPLOAD(dr, res0);
        TPP_UPLOAD(dw, w);
        TPP_ALLOC(dy, n * sizeof(float));
        float* y = mode == 2 ? dx.as<float>() : dy.as<float>();
        TPP_OK(kernels::add_rmsnorm_cuda(dx.as<float>(), mode == 0 ? dr.as<float>() : nullptr,
                                         dw.as<float>(), y, rows, cols, 1e-6f, nullptr));
        std::vector<float> got_y(n), got_res(n);
        TPP_DOWNLOAD(got_y, mode == 2 ? dx : dy);
        TPP_DOWNLOAD(got_res, dr);
        EXPECT_TRUE(all_close(got_y, want_y, 1e-5f, 1e-4f))
            << "rows " << rows << " cols " << cols << " mode " << mode;
        EXPECT_TRUE(all_close(got_res, want_res, 0.f, 0.f))
            << "residual, rows " << rows << " cols " << cols << " mode " << mode;
      }
    }
#endif
}

TEST(RopeCuda, MatchesReferenceNeoxAndInterleaved) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  struct Case {
    std::int64_t rows, heads, stride, offset, rot;
    bool neox, yarn;
  };
  const Case cases[] = {
      {37, 5, 128, 0, 128, true, false},  // Llama
      {1, 3, 64, 0, 64, true, false},
      {37, 7, 192, 128, 64, false, true},  // DeepSeek's MLA: the rope part after nope
      {37, 1, 64, 0, 64, false, true},     // the shared k_pe
      {4, 2, 100, 2, 34, true, false},     // odd sizes
  };
  for (const Case& c : cases) {
    std::vector<float> inv(static_cast<std::size_t>(c.rot / 2));
    float mscale = 1.f;
    if (c.yarn) {
      kernels::yarn_inv_freq(10000.f, c.rot, 40.f, 4096, 32.f, 1.f, inv.data());
      mscale = kernels::yarn_mscale(40.f, 0.707f, 1.f);
    } else {
      kernels::rope_inv_freq(500000.f, c.rot, inv.data());
    }
    std::vector<std::int64_t> pos(static_cast<std::size_t>(c.rows));
    std::mt19937 rng(50);
    for (auto& p : pos) p = static_cast<std::int64_t>(rng() % 131072);
    pos[0] = 0;
    auto x = random_vector(static_cast<std::size_t>(c.rows * c.heads * c.stride), 51);
    auto want = x;
    kernels::rope_ref(want.data(), pos.data(), c.rows, c.heads, c.stride, c.offset, c.rot,
                      inv.data(), mscale, c.neox);
    DeviceBuffer dx, dp, di;
    TPP_UPLOAD(dx, x);
    TPP_UPLOAD(dp, pos);
    TPP_UPLOAD(di, inv);
    TPP_OK(kernels::rope_cuda(dx.as<float>(), dp.as<std::int64_t>(), c.rows, c.heads, c.stride,
                              c.offset, c.rot, di.as<float>(), mscale, c.neox, nullptr));
    std::vector<float> got(x.size());
    TPP_DOWNLOAD(got, dx);
    EXPECT_TRUE(all_close(got, want, 1e-5f, 1e-5f))
        << "rows " << c.rows << " heads " << c.heads << " rot " << c.rot << " neox " << c.neox;
  }
#endif
}

TEST(SiluMulCuda, MatchesReference) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  for (std::int64_t rows : {1, 37})
    for (std::int64_t inter : {1, 4095, 4096, 14336}) {
      auto gu = random_vector(static_cast<std::size_t>(rows * 2 * inter), 60);
      gu[0] = -100.f;  // exp overflows to inf: silu is -0
      std::vector<float> want(static_cast<std::size_t>(rows * inter)), got(want.size());
      kernels::silu_mul_ref(gu.data(), want.data(), rows, inter);
      DeviceBuffer dg, dout;
      TPP_UPLOAD(dg, gu);
      TPP_ALLOC(dout, want.size() * sizeof(float));
      TPP_OK(kernels::silu_mul_cuda(dg.as<float>(), dout.as<float>(), rows, inter, nullptr));
      TPP_DOWNLOAD(got, dout);
      EXPECT_TRUE(all_close(got, want, 1e-6f, 1e-5f)) << "rows " << rows << " inter " << inter;
    }
#endif
}

TEST(SmallOpsCuda, AddBiasAddScaledSigmoidGateGatherRows) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  for (std::int64_t rows : {1, 37})
    for (std::int64_t cols : {1, 4095, 4096}) {
      const auto n = static_cast<std::size_t>(rows * cols);
      const auto y0 = random_vector(n, 70), x = random_vector(n, 71);
      const auto bias = random_vector(static_cast<std::size_t>(cols), 72);
      auto gate = random_vector(static_cast<std::size_t>(rows), 73);
      gate[0] = 30.f;
      std::vector<float> got(n);
      {  // add_bias
        auto want = y0;
        kernels::add_bias_ref(want.data(), bias.data(), rows, cols);
        DeviceBuffer dy, db;
        TPP_UPLOAD(dy, y0);
        TPP_UPLOAD(db, bias);
        TPP_OK(kernels::add_bias_cuda(dy.as<float>(), db.as<float>(), rows, cols, nullptr));
        TPP_DOWNLOAD(got, dy);
        EXPECT_TRUE(all_close(got, want, 0.f, 0.f)) << "add_bias " << rows << " x " << cols;
      }
      {  // add_scaled, over the whole rows x cols
        auto want = y0;
        kernels::add_scaled_ref(want.data(), x.data(), static_cast<std::int64_t>(n), -0.3f);
        DeviceBuffer dy, dx;
        TPP_UPLOAD(dy, y0);
        TPP_UPLOAD(dx, x);
        TPP_OK(kernels::add_scaled_cuda(dy.as<float>(), dx.as<float>(),
                                        static_cast<std::int64_t>(n), -0.3f, nullptr));
        TPP_DOWNLOAD(got, dy);
        // 1e-6: a host compiler that contracts y + a x into an fma may differ in the last bit.
        EXPECT_TRUE(all_close(got, want, 1e-6f, 1e-6f)) << "add_scaled " << n;
      }
      {  // sigmoid_gate
        auto want = y0;
        kernels::sigmoid_gate_ref(want.data(), gate.data(), rows, cols);
        DeviceBuffer dy, dg;
        TPP_UPLOAD(dy, y0);
        TPP_UPLOAD(dg, gate);
        TPP_OK(kernels::sigmoid_gate_cuda(dy.as<float>(), dg.as<float>(), rows, cols, nullptr));
        TPP_DOWNLOAD(got, dy);
        EXPECT_TRUE(all_close(got, want, 1e-6f, 1e-6f)) << "sigmoid_gate " << rows << " x " << cols;
      }
      {  // gather_rows: 2 rows + 3 picks from the rows, repeats included
        const std::int64_t picks = rows + 3;
        std::vector<std::int32_t> index(static_cast<std::size_t>(picks));
        for (std::int64_t i = 0; i < picks; ++i)
          index[i] = static_cast<std::int32_t>((i * 7 + 3) % rows);
        std::vector<float> want(static_cast<std::size_t>(picks * cols)), g(want.size());
        kernels::gather_rows_ref(x.data(), index.data(), picks, cols, want.data());
        DeviceBuffer dx, di, dd;
        TPP_UPLOAD(dx, x);
        TPP_UPLOAD(di, index);
        TPP_ALLOC(dd, want.size() * sizeof(float));
        TPP_OK(kernels::gather_rows_cuda(dx.as<float>(), di.as<std::int32_t>(), picks, cols,
                                         dd.as<float>(), nullptr));
        TPP_DOWNLOAD(g, dd);
        EXPECT_TRUE(all_close(g, want, 0.f, 0.f)) << "gather_rows " << picks << " x " << cols;
      }
    }
#endif
}

TEST(ArgmaxCuda, FirstIndexOfTheMaximum) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  for (std::int64_t cols : {1, 37, 4095, 4096, 256000, 262147}) {
    const std::int64_t rows = 37;
    auto x = random_vector(static_cast<std::size_t>(rows * cols), 80);
    std::mt19937 rng(81);
    for (std::int64_t r = 0; r < rows; ++r) {
      float* xr = x.data() + r * cols;
      const auto a = static_cast<std::int64_t>(rng() % cols);
      const auto b = static_cast<std::int64_t>(rng() % cols);
      if (r % 4 == 0) xr[a] = xr[b] = 50.f;             // a tie: the lower of a and b
      if (r % 4 == 1) std::fill(xr, xr + cols, 2.f);    // all equal: 0
      if (r % 4 == 2) std::fill(xr, xr + cols, -INFINITY);
      if (r % 4 == 3) xr[cols - 1] = 60.f;              // the last
    }
    std::vector<std::int64_t> want(static_cast<std::size_t>(rows)), got(want.size());
    kernels::argmax_ref(x.data(), rows, cols, want.data());
    DeviceBuffer dx, dout;
    TPP_UPLOAD(dx, x);
    TPP_ALLOC(dout, want.size() * sizeof(std::int64_t));
    TPP_OK(kernels::argmax_cuda(dx.as<float>(), rows, cols, dout.as<std::int64_t>(), nullptr));
    TPP_DOWNLOAD(got, dout);
    EXPECT_TRUE(all_equal(got, want)) << "cols " << cols;
  }
#endif
}

TEST(TopkSoftmaxCuda, MatchesReferenceTiesIncluded) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  for (std::int64_t experts : {8, 37, 64, 256})
    for (std::int64_t k : {1, 2, 8}) {
      const std::int64_t rows = 37;
      auto l = random_vector(static_cast<std::size_t>(rows * experts), 90);
      for (std::int64_t r = 0; r < rows; r += 2)  // even rows: few distinct values, many ties
        for (std::int64_t e = 0; e < experts; ++e)
          l[r * experts + e] = std::round(l[r * experts + e]);
      std::vector<std::int32_t> want_ids(static_cast<std::size_t>(rows * k));
      std::vector<std::int32_t> got_ids(want_ids.size());
      std::vector<float> want_w(want_ids.size()), got_w(want_ids.size());
      kernels::topk_softmax_ref(l.data(), rows, experts, k, want_ids.data(), want_w.data());
      DeviceBuffer dl, di, dw;
      TPP_UPLOAD(dl, l);
      TPP_ALLOC(di, want_ids.size() * sizeof(std::int32_t));
      TPP_ALLOC(dw, want_w.size() * sizeof(float));
      TPP_OK(kernels::topk_softmax_cuda(dl.as<float>(), rows, experts, k, di.as<std::int32_t>(),
                                        dw.as<float>(), nullptr));
      TPP_DOWNLOAD(got_ids, di);
      TPP_DOWNLOAD(got_w, dw);
      EXPECT_TRUE(all_equal(got_ids, want_ids)) << "experts " << experts << " k " << k;
      EXPECT_TRUE(all_close(got_w, want_w, 1e-6f, 1e-5f)) << "experts " << experts << " k " << k;
    }
#endif
}

TEST(MoePermuteCuda, SameOrderAsReference) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  struct Case {
    std::int64_t rows, k, experts, first, local;
  };
  const Case cases[] = {
      {1, 2, 8, 0, 8},     {37, 2, 8, 0, 8},      {37, 8, 64, 16, 16}, {37, 8, 64, 0, 0},
      {1000, 8, 256, 32, 32}, {8192, 8, 64, 0, 64}, {8192, 8, 256, 224, 32}, {3000, 6, 384, 0, 384},
  };
  for (const Case& c : cases) {
    const auto n = static_cast<std::size_t>(c.rows * c.k);
    std::vector<std::int32_t> ids(n);
    std::mt19937 rng(100);
    for (std::int64_t r = 0; r < c.rows; ++r)  // k distinct experts a row, skewed to the low ones
      for (std::int64_t j = 0; j < c.k; ++j) {
        std::int32_t e;
        bool again;
        do {
          e = static_cast<std::int32_t>((rng() % c.experts) * (rng() % c.experts) / c.experts);
          again = false;
          for (std::int64_t q = 0; q < j; ++q) again = again || ids[r * c.k + q] == e;
        } while (again);
        ids[r * c.k + j] = e;
      }
    std::vector<std::int32_t> want_off(static_cast<std::size_t>(c.local + 1)), want_src(n, -5),
        want_where(n);
    kernels::moe_permute_ref(ids.data(), c.rows, c.k, c.first, c.local, want_off.data(),
                             want_src.data(), want_where.data());
    DeviceBuffer di, doff, dsrc, dwhere;
    TPP_UPLOAD(di, ids);
    TPP_ALLOC(doff, want_off.size() * sizeof(std::int32_t));
    TPP_ALLOC(dsrc, n * sizeof(std::int32_t));
    TPP_ALLOC(dwhere, n * sizeof(std::int32_t));
    TPP_OK(kernels::moe_permute_cuda(di.as<std::int32_t>(), c.rows, c.k, c.first, c.local,
                                     doff.as<std::int32_t>(), dsrc.as<std::int32_t>(),
                                     dwhere.as<std::int32_t>(), nullptr));
    std::vector<std::int32_t> got_off(want_off.size()), got_src(n), got_where(n);
    TPP_DOWNLOAD(got_off, doff);
    TPP_DOWNLOAD(got_src, dsrc);
    TPP_DOWNLOAD(got_where, dwhere);
    const std::string what = "rows " + std::to_string(c.rows) + " k " + std::to_string(c.k) +
                             " first " + std::to_string(c.first) +
                             " local " + std::to_string(c.local);
    EXPECT_TRUE(all_equal(got_off, want_off)) << what;
    EXPECT_TRUE(all_equal(got_where, want_where)) << what;
    const auto kept = static_cast<std::size_t>(want_off.back());
    got_src.resize(kept);
    want_src.resize(kept);
    EXPECT_TRUE(all_equal(got_src, want_src)) << what;
  }
#endif
}

TEST(MoeCombineCuda, MatchesReference) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  for (std::int64_t rows : {1, 37})
    for (std::int64_t cols : {4095, 4096}) {
      const std::int64_t k = 4, experts = 16, first = 4, local = 8;
      const auto n = static_cast<std::size_t>(rows * k);
      std::vector<std::int32_t> ids(n), src(n), where(n);
      std::vector<std::int32_t> offsets(static_cast<std::size_t>(local + 1));
      for (std::size_t i = 0; i < n; ++i)
        ids[i] = static_cast<std::int32_t>((i * 5 + i / k) % experts);
      kernels::moe_permute_ref(ids.data(), rows, k, first, local, offsets.data(), src.data(),
                               where.data());
      const std::int64_t pairs = std::max<std::int32_t>(offsets.back(), 1);
      const auto y = random_vector(static_cast<std::size_t>(pairs * cols), 110);
      const auto w = random_vector(n, 111);
      std::vector<float> want(static_cast<std::size_t>(rows * cols)), got(want.size());
      kernels::moe_combine_ref(y.data(), where.data(), w.data(), rows, k, cols, want.data());
      DeviceBuffer dy, dwhere, dw, dout;
      TPP_UPLOAD(dy, y);
      TPP_UPLOAD(dwhere, where);
      TPP_UPLOAD(dw, w);
      TPP_ALLOC(dout, want.size() * sizeof(float));
      std::vector<float> junk(want.size(), 123.f);  // overwritten, not accumulated into
      auto st = kernels::to_device(dout.p, junk.data(), junk.size() * sizeof(float));
      ASSERT_TRUE(st.ok) << st.message;
      TPP_OK(kernels::moe_combine_cuda(dy.as<float>(), dwhere.as<std::int32_t>(), dw.as<float>(),
                                       rows, k, cols, dout.as<float>(), nullptr));
      TPP_DOWNLOAD(got, dout);
      EXPECT_TRUE(all_close(got, want, 1e-6f, 1e-6f)) << "rows " << rows << " cols " << cols;
    }
#endif
}

TEST(HostHelpersCuda, ReportFailuresWithFileAndLine) {
  if (kernels::device_count() == 0)
    GTEST_SKIP() << (kernels::built_with_cuda() ? "no CUDA device present"
                                                : "built without CUDA");
#if defined(TPP_HAVE_CUDA)
  void* p = nullptr;
  const auto st = kernels::device_alloc(&p, std::size_t{1} << 60);  // an exabyte: fails
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.message.find("host.cu:"), std::string::npos) << st.message;
  EXPECT_NE(st.message.find("cudaMalloc"), std::string::npos) << st.message;
  kernels::device_free(p);
  const auto ok = kernels::device_sync();  // the failure is not sticky
  EXPECT_TRUE(ok.ok) << ok.message;
#endif
}

}  // namespace
}  // namespace tpp
