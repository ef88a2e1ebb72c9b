#include "executor/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/file.h"

namespace tpp::exec {
namespace {

constexpr std::uint64_t kMaxHeader = 100u << 20;  // the reference implementation's limit

int dtype_size(const std::string& d) {
  if (d == "F32") return 4;
  if (d == "F16" || d == "BF16") return 2;
  return 0;
}

Error bad(const std::string& path, const std::string& msg) { return make_error(path, 0, 0, msg); }

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((man & 0x400u) == 0) {
        man <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((man & 0x3FFu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

std::int64_t StTensor::elements() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

const StTensor* StFile::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

Expected<StFile> read_safetensors(const std::string& path) {
  const PathInfo info = inspect_path(path);
  if (info.kind != PathKind::kRegular)
    return bad(path, info.kind == PathKind::kDirectory ? "is a directory, not a safetensors file"
                                                       : info.what);
  std::ifstream in(path, std::ios::binary);
  if (!in) return bad(path, "cannot be read");
  in.seekg(0, std::ios::end);
  StFile f;
  f.path = path;
  f.file_size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  if (f.file_size < 8)
    return bad(path, "is " + std::to_string(f.file_size) +
                         " bytes, shorter than a safetensors header's 8-byte length (truncated?)");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  std::uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | len_bytes[k];
  if (n > kMaxHeader || n > f.file_size - 8)
    return bad(path, "its header claims " + std::to_string(n) + " bytes, but the file has " +
                         std::to_string(f.file_size - 8) + " after the length (truncated, or not " +
                         "a safetensors file)");
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  if (!in) return bad(path, "cannot read its header");
  f.data_start = 8 + n;
  const std::uint64_t data_size = f.file_size - f.data_start;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const nlohmann::json::exception&) {
    return bad(path, "its header is not JSON (not a safetensors file?)");
  }
  if (!j.is_object()) return bad(path, "its header is not a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) return bad(path, "its __metadata__ is not an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m)
        if (m->is_string()) f.metadata[m.key()] = m->get<std::string>();
      continue;
    }
    const auto& v = *it;
    const std::string where = "tensor '" + clip(name) + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      return bad(path, where + " needs dtype, shape and data_offsets");
    StTensor t;
    t.name = name;
    if (!v["dtype"].is_string()) return bad(path, where + ": dtype is not a string");
    t.dtype = v["dtype"].get<std::string>();
    if (dtype_size(t.dtype) == 0)
      return bad(path, where + ": dtype '" + clip(t.dtype) + "' is not one tpp reads (F32, F16, BF16)");
    if (!v["shape"].is_array()) return bad(path, where + ": shape is not a list");
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0 || d.get<std::int64_t>() > (1ll << 40))
        return bad(path, where + ": shape holds something other than a size");
      t.shape.push_back(d.get<std::int64_t>());
    }
    const auto& o = v["data_offsets"];
    if (!o.is_array() || o.size() != 2 || !o[0].is_number_unsigned() || !o[1].is_number_unsigned())
      return bad(path, where + ": data_offsets is not [begin, end]");
    t.begin = o[0].get<std::uint64_t>();
    t.end = o[1].get<std::uint64_t>();
    if (t.end < t.begin || t.end > data_size)
      return bad(path, where + ": data_offsets [" + std::to_string(t.begin) + ", " +
                           std::to_string(t.end) + "] run past the data (" +
                           std::to_string(data_size) + " bytes; truncated file?)");
    std::int64_t elements = 1;
    for (auto d : t.shape) {
      if (d > 0 && elements > (std::int64_t{1} << 50) / d)
        return bad(path, where + ": shape is too large");
      elements *= d;
    }
    const std::uint64_t want = static_cast<std::uint64_t>(elements) * static_cast<std::uint64_t>(dtype_size(t.dtype));
    if (t.end - t.begin != want)
      return bad(path, where + ": data_offsets span " + std::to_string(t.end - t.begin) +
                           " bytes, but shape and dtype " + t.dtype + " need " + std::to_string(want));
    f.tensors.push_back(std::move(t));
  }
  // No two tensors share bytes.
  std::vector<const StTensor*> order;
  for (const auto& t : f.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (std::size_t k = 1; k < order.size(); ++k)
    if (order[k]->begin < order[k - 1]->end)
      return bad(path, "tensors '" + clip(order[k - 1]->name) + "' and '" + clip(order[k]->name) +
                           "' overlap in the data");
  return f;
}

Expected<std::vector<float>> read_tensor(const StFile& f, const StTensor& t) {
  std::ifstream in(f.path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(f.data_start + t.begin));
  std::vector<char> raw(t.end - t.begin);
  in.read(raw.data(), static_cast<std::streamsize>(raw.size()));
  if (!in)
    return bad(f.path, "tensor '" + clip(t.name) + "': cannot read its " +
                           std::to_string(raw.size()) + " bytes (the file changed?)");
  std::vector<float> out(static_cast<std::size_t>(t.elements()));
  if (t.dtype == "F32") {
    std::memcpy(out.data(), raw.data(), raw.size());
  } else {
    for (std::size_t k = 0; k < out.size(); ++k) {
      std::uint16_t h;
      std::memcpy(&h, raw.data() + 2 * k, 2);
      if (t.dtype == "BF16") {
        const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
        std::memcpy(&out[k], &bits, 4);
      } else {
        out[k] = half_to_float(h);
      }
    }
  }
  return out;
}

std::optional<Error> write_safetensors(const std::string& path, const std::vector<StWrite>& tensors,
                                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h;
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::uint64_t at = 0;
  for (const auto& t : tensors) {
    std::uint64_t n = 1;
    for (auto d : t.shape) n *= static_cast<std::uint64_t>(d);
    h[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {at, at + 4 * n}}};
    at += 4 * n;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) return bad(path, "cannot be written");
    std::uint64_t n = header.size();
    unsigned char len[8];
    for (int k = 0; k < 8; ++k) len[k] = static_cast<unsigned char>(n >> (8 * k));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const auto& t : tensors) {
      std::uint64_t n = 1;
      for (auto d : t.shape) n *= static_cast<std::uint64_t>(d);
      out.write(reinterpret_cast<const char*>(t.data), static_cast<std::streamsize>(4 * n));
    }
    if (!out) return bad(path, "cannot be written (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return bad(path, "cannot be written");
  return std::nullopt;
}

}  // namespace tpp::exec
