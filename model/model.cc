#include "model/model.h"

#include <algorithm>

namespace tpp::model {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "fp16";
    case DType::kFP8E4M3: return "fp8_e4m3";
    case DType::kINT8: return "int8";
    case DType::kINT4: return "int4";
    case DType::kFP4E2M1: return "fp4_e2m1";
  }
  return "?";
}

double dtype_bytes(DType d) {
  switch (d) {
    case DType::kF32: return 4;
    case DType::kBF16:
    case DType::kF16: return 2;
    case DType::kFP8E4M3:
    case DType::kINT8: return 1;
    case DType::kINT4:
    case DType::kFP4E2M1: return 0.5;
  }
  return 0;
}

std::optional<DType> parse_dtype(const std::string& s) {
  if (s == "f32" || s == "fp32" || s == "float32" || s == "float") return DType::kF32;
  if (s == "bf16" || s == "bfloat16") return DType::kBF16;
  if (s == "fp16" || s == "f16" || s == "float16" || s == "half") return DType::kF16;
  if (s == "fp8_e4m3" || s == "fp8" || s == "float8_e4m3fn") return DType::kFP8E4M3;
  if (s == "int8") return DType::kINT8;
  if (s == "int4") return DType::kINT4;
  if (s == "fp4_e2m1" || s == "fp4") return DType::kFP4E2M1;
  return std::nullopt;
}

const char* kv_cache_dtype_name(KvCacheDType d) {
  switch (d) {
    case KvCacheDType::kAuto: return "auto";
    case KvCacheDType::kBF16: return "bfloat16";
    case KvCacheDType::kF16: return "float16";
    case KvCacheDType::kFP8: return "fp8";
    case KvCacheDType::kFP8E4M3: return "fp8_e4m3";
    case KvCacheDType::kFP8E5M2: return "fp8_e5m2";
    case KvCacheDType::kNvfp4: return "nvfp4";
  }
  return "?";
}

std::optional<KvCacheDType> parse_kv_cache_dtype(const std::string& s) {
  if (s == "auto") return KvCacheDType::kAuto;
  if (s == "bfloat16" || s == "bf16") return KvCacheDType::kBF16;
  if (s == "float16" || s == "fp16" || s == "half") return KvCacheDType::kF16;
  if (s == "fp8") return KvCacheDType::kFP8;
  if (s == "fp8_e4m3") return KvCacheDType::kFP8E4M3;
  if (s == "fp8_e5m2") return KvCacheDType::kFP8E5M2;
  if (s == "nvfp4" || s == "fp4_e2m1") return KvCacheDType::kNvfp4;  // vLLM's and SGLang's names
  return std::nullopt;
}

const char* quant_method_name(QuantMethod m) {
  switch (m) {
    case QuantMethod::kNone: return "none";
    case QuantMethod::kFp8: return "fp8";
    case QuantMethod::kAwq: return "awq";
    case QuantMethod::kGptq: return "gptq";
    case QuantMethod::kCompressedTensors: return "compressed-tensors";
    case QuantMethod::kMxfp4: return "mxfp4";
    case QuantMethod::kNvfp4: return "modelopt_fp4";
  }
  return "?";
}

const char* attention_kind_name(AttentionKind k) {
  switch (k) {
    case AttentionKind::kMHA: return "MHA";
    case AttentionKind::kGQA: return "GQA";
    case AttentionKind::kMQA: return "MQA";
    case AttentionKind::kMLA: return "MLA";
  }
  return "?";
}

const char* layer_attention_name(LayerAttention k) {
  switch (k) {
    case LayerAttention::kFull: return "full";
    case LayerAttention::kSlidingWindow: return "sliding";
    case LayerAttention::kChunkedLocal: return "chunked";
    case LayerAttention::kLinear: return "linear";
  }
  return "?";
}

LayerAttention Model::layer_attention_of(std::int64_t layer) const {
  if (layer < 0 || layer >= static_cast<std::int64_t>(layer_attention.size()))
    return LayerAttention::kFull;
  return layer_attention[static_cast<std::size_t>(layer)];
}

bool Model::windowed_attention() const {  // or linear
  return std::any_of(layer_attention.begin(), layer_attention.end(),
                     [](LayerAttention k) { return k != LayerAttention::kFull; });
}

AttentionKind Model::attention_kind() const {
  if (mla) return AttentionKind::kMLA;
  if (attention.num_kv_heads == attention.num_heads) return AttentionKind::kMHA;
  if (attention.num_kv_heads == 1) return AttentionKind::kMQA;
  return AttentionKind::kGQA;
}

bool Model::is_moe_layer(std::int64_t layer) const {
  if (!moe) return false;
  if (layer >= num_layers) return true;  // DeepSeek's MTP decoder layer is a MoE layer
  if (layer < moe->first_k_dense) return false;
  return std::find(moe->dense_layers.begin(), moe->dense_layers.end(), layer) ==
         moe->dense_layers.end();
}

std::int64_t Model::num_moe_layers() const {
  std::int64_t n = 0;
  for (std::int64_t l = 0; l < num_layers; ++l) n += is_moe_layer(l) ? 1 : 0;
  return n;
}

}  // namespace tpp::model
