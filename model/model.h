// The in-memory description of a decoder-only LLM: shapes, layer kinds, weight storage and the
// default KV-cache dtype. It knows nothing of machines or costs (see ARCHITECTURE.md).
// Built by load_model() (load.h) from tpp's own YAML (docs/model-schema.md) or a Hugging Face
// config.json; both go through the same validation, so a Model that exists is consistent.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tpp::model {

// Bounds on every size a model may declare. Real models sit far below them; they keep every
// product of shapes inside int64 (experts x 3 x hidden x intermediate x layers < 2^62).
inline constexpr std::int64_t kMaxHidden = 65536;
inline constexpr std::int64_t kMaxIntermediate = 262144;
inline constexpr std::int64_t kMaxVocab = 2097152;
inline constexpr std::int64_t kMaxLayers = 4096;
inline constexpr std::int64_t kMaxHeads = 4096;
inline constexpr std::int64_t kMaxHeadDim = 4096;
inline constexpr std::int64_t kMaxExperts = 1024;
inline constexpr std::int64_t kMaxMtpLayers = 16;
inline constexpr std::int64_t kMaxPositions = std::int64_t{1} << 34;

enum class DType { kF32, kBF16, kF16, kFP8E4M3, kINT8, kINT4 };
const char* dtype_name(DType d);       // "f32", "bf16", "fp16", "fp8_e4m3", "int8", "int4"
double dtype_bytes(DType d);           // 4, 2, 2, 1, 1, 0.5
std::optional<DType> parse_dtype(const std::string& s);  // also "float16", "bfloat16", ...

// vLLM's --kv-cache-dtype values.
enum class KvCacheDType { kAuto, kBF16, kF16, kFP8, kFP8E4M3, kFP8E5M2 };
const char* kv_cache_dtype_name(KvCacheDType d);
std::optional<KvCacheDType> parse_kv_cache_dtype(const std::string& s);

// How the checkpoint stores its linear weights. Embeddings, the LM head, norms and MoE routers
// are never quantized (vLLM builds them with quant_config=None or as unquantized layers).
enum class QuantMethod { kNone, kFp8, kAwq, kGptq, kCompressedTensors };
const char* quant_method_name(QuantMethod m);  // vLLM's --quantization name ("none" for kNone)

struct Quantization {
  QuantMethod method = QuantMethod::kNone;
  DType weight_dtype = DType::kBF16;  // equals Model::dtype when method is kNone
  std::int64_t block_rows = 0;        // fp8 block scales: [block_rows, block_cols], one fp32
  std::int64_t block_cols = 0;        //   scale per block; 0 x 0 = one scale per tensor
  std::int64_t group_size = 0;        // int4/int8: input channels per scale; -1 = per channel
  bool zero_point = false;            // int4/int8 group zero points (AWQ, GPTQ, asym)
  bool g_idx = false;                 // GPTQ's per-input-channel group index (int32)
};

struct Attention {
  std::int64_t num_heads = 0;
  std::int64_t num_kv_heads = 0;  // == num_heads: MHA; 1: MQA; otherwise GQA
  std::int64_t head_dim = 0;
  bool qkv_bias = false;  // Qwen2, Llama attention_bias
  bool o_bias = false;    // Llama attention_bias
  bool qk_norm = false;   // Qwen3: RMSNorm over head_dim on q and k
};

// DeepSeek multi-head latent attention.
struct Mla {
  std::int64_t q_lora_rank = 0;  // 0: no query compression (q_proj directly, DeepSeek-V2-Lite)
  std::int64_t kv_lora_rank = 0;
  std::int64_t qk_nope_head_dim = 0;
  std::int64_t qk_rope_head_dim = 0;
  std::int64_t v_head_dim = 0;
};

struct Moe {
  std::int64_t num_experts = 0;             // routed experts
  std::int64_t experts_per_token = 0;
  std::int64_t expert_intermediate_size = 0;
  std::int64_t num_shared_experts = 0;
  std::int64_t shared_intermediate_size = 0;  // total width of the shared expert MLP
  bool shared_expert_gate = false;            // Qwen2-MoE: sigmoid gate [1, hidden]
  bool router_bias = false;                   // DeepSeek-V3 e_score_correction_bias [experts]
  std::int64_t first_k_dense = 0;             // layers [0, k) use the dense MLP
  std::vector<std::int64_t> dense_layers;     // further layers that use the dense MLP
};

enum class AttentionKind { kMHA, kGQA, kMQA, kMLA };
const char* attention_kind_name(AttentionKind k);

struct Model {
  std::string name;
  std::string hf_repo;       // the Hugging Face repository vLLM loads it from, when known
  std::string architecture;  // the HF architecture it was read as, or "tpp-yaml"
  std::string source;        // the file it came from
  std::int64_t hidden_size = 0;
  std::int64_t num_layers = 0;
  std::int64_t vocab_size = 0;
  std::int64_t max_position_embeddings = 0;
  std::int64_t intermediate_size = 0;  // the dense MLP width
  bool tie_word_embeddings = false;
  bool mlp_bias = false;
  DType dtype = DType::kBF16;          // activation / unquantized weight dtype
  Attention attention;
  std::optional<Mla> mla;
  std::optional<Moe> moe;
  std::int64_t mtp_layers = 0;         // DeepSeek multi-token prediction (not loaded by vLLM
                                       // unless speculative decoding asks for it)
  Quantization quant;
  KvCacheDType kv_cache_dtype = KvCacheDType::kAuto;

  AttentionKind attention_kind() const;
  bool is_moe_layer(std::int64_t layer) const;  // layer in [0, num_layers + mtp_layers)
  std::int64_t num_moe_layers() const;          // among the num_layers main layers
};

}  // namespace tpp::model
