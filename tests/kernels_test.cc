// Every CUDA kernel against its CPU reference. The GPU comparisons skip, visibly, where no GPU
// is present (built without CUDA, or no device); the CPU reference checks always run.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/device.h"
#include "kernels/rmsnorm.h"

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

}  // namespace
}  // namespace tpp
