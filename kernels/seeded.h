// The seeded-weight generator's arithmetic, shared by the CPU (executor/weights.cc) and the
// device (kernels/seeded.cu): every element is a pure function of (tensor name hash, global
// element index), so a GPU rank generates its shard where it lives and gets the CPU's values.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define TPP_HD __host__ __device__ __forceinline__
#else
#define TPP_HD inline
#endif

namespace tpp::kernels {

TPP_HD std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [-scale, scale): 24 random bits, exact in float.
TPP_HD float seeded_value(std::uint64_t name_hash, std::uint64_t index, float scale) {
  const std::uint64_t r = splitmix64(name_hash ^ splitmix64(index));
  const float u = static_cast<float>(r >> 40) * 5.9604644775390625e-8f;  // 2^-24
  return (2 * u - 1) * scale;
}

}  // namespace tpp::kernels
