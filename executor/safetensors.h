// safetensors (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian
// header length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]},
// "__metadata__": {string: string}}, then the data, each tensor's bytes at [begin, end) of it,
// row-major, little-endian. Read with the JSON library; every claim the header makes (sizes,
// offsets, dtypes, overlaps) is checked against the file before a byte of data is trusted.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace tpp::exec {

struct StTensor {
  std::string name;
  std::string dtype;                 // F32, F16, BF16 (what this reader converts)
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // within the data section
  std::int64_t elements() const;
};

struct StFile {
  std::string path;
  std::uint64_t data_start = 0;  // 8 + header length
  std::uint64_t file_size = 0;
  std::vector<StTensor> tensors;
  std::map<std::string, std::string> metadata;
  const StTensor* find(const std::string& name) const;
};

// Errors name the file and the tensor: a file shorter than its header says, a header that is
// not JSON or names an unknown dtype, offsets that run past the data, overlap, or disagree with
// shape x dtype size.
Expected<StFile> read_safetensors(const std::string& path);
// The tensor's values as float32 (F16 and BF16 widened exactly).
Expected<std::vector<float>> read_tensor(const StFile& f, const StTensor& t);

struct StWrite {
  std::string name;
  std::vector<std::int64_t> shape;
  const float* data;  // shape's product of floats, written as F32
};
std::optional<Error> write_safetensors(const std::string& path, const std::vector<StWrite>& tensors,
                                       const std::map<std::string, std::string>& metadata);

}  // namespace tpp::exec
