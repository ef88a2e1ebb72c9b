// Small pieces the .cu files of kernels/ share (not part of the public header set).
#pragma once

#include <cstdint>
#include <string>

#include "kernels/check.h"

namespace tpp::kernels {

// A failed status naming the source line, for checks of arguments before a launch.
inline KernelStatus fail(const char* file, int line, const std::string& what) {
  return KernelStatus::Fail(std::string(file) + ":" + std::to_string(line) + ": " + what);
}

// A pointer that 16-byte vector loads and stores may use.
inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// W floats, loaded and stored as one access (16 bytes for W = 4).
template <int W>
struct alignas(4 * W) Vec {
  float v[W];
};

}  // namespace tpp::kernels
