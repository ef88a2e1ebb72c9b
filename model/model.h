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

enum class DType { kF32, kBF16, kF16, kFP8E4M3, kINT8, kINT4, kFP4E2M1 };
const char* dtype_name(DType d);       // "f32", "bf16", "fp16", "fp8_e4m3", "int8", "int4",
                                       // "fp4_e2m1"
double dtype_bytes(DType d);           // 4, 2, 2, 1, 1, 0.5, 0.5
std::optional<DType> parse_dtype(const std::string& s);  // also "float16", "bfloat16", ...

// vLLM's --kv-cache-dtype values.
// kNvfp4: 4-bit E2M1 values with an FP8 scale a block of 16 (vLLM's and TensorRT-LLM's nvfp4,
// SGLang's fp4_e2m1): 0.5625 bytes a value (simulator/memory.cc, kv_element_bytes).
enum class KvCacheDType { kAuto, kBF16, kF16, kFP8, kFP8E4M3, kFP8E5M2, kNvfp4 };
const char* kv_cache_dtype_name(KvCacheDType d);
std::optional<KvCacheDType> parse_kv_cache_dtype(const std::string& s);

// How the checkpoint stores its linear weights. Embeddings, the LM head, norms and MoE routers
// are never quantized (vLLM builds them with quant_config=None or as unquantized layers).
// MXFP4 (gpt-oss): fp4 e2m1 values in blocks of 32 along the input, one uint8 E8M0 scale per
// block; vLLM's Mxfp4Config quantizes the MoE experts only (every other linear layer stays in
// the model dtype, quantization/mxfp4.py get_quant_method).
// NVFP4 (NVIDIA ModelOpt, vLLM's modelopt_fp4): fp4 e2m1 values packed two a byte, an fp8 e4m3
// scale per 16 along the input, and two fp32 scalars (weight_scale_2, input_scale) a tensor, on
// every linear layer but those the checkpoint's ignore list names.
enum class QuantMethod { kNone, kFp8, kAwq, kGptq, kCompressedTensors, kMxfp4, kNvfp4 };
const char* quant_method_name(QuantMethod m);  // vLLM's --quantization name ("none" for kNone)

struct Quantization {
  QuantMethod method = QuantMethod::kNone;
  DType weight_dtype = DType::kBF16;  // equals Model::dtype when method is kNone
  std::int64_t block_rows = 0;        // fp8 block scales: [block_rows, block_cols], one fp32
  std::int64_t block_cols = 0;        //   scale per block; 0 x 0 = one scale per tensor
  std::int64_t group_size = 0;        // int4/int8: input channels per scale; -1 = per channel
  bool zero_point = false;            // int4/int8 group zero points (AWQ, GPTQ, asym)
  bool g_idx = false;                 // GPTQ's per-input-channel group index (int32)
  bool experts_only = false;          // only the routed experts are stored quantized (MXFP4)
  // Modules left unquantized (ModelOpt's ignore / exclude_modules): a name matches when equal,
  // when it contains the entry, or by the entry as a glob (vLLM's is_layer_excluded), against
  // the module's checkpoint name ("model.layers.3.self_attn.o_proj", "lm_head").
  std::vector<std::string> ignore;
};

struct Attention {
  std::int64_t num_heads = 0;
  std::int64_t num_kv_heads = 0;  // == num_heads: MHA; 1: MQA; otherwise GQA
  std::int64_t head_dim = 0;
  bool qkv_bias = false;  // Qwen2, Llama attention_bias
  bool o_bias = false;    // Llama attention_bias
  bool qk_norm = false;   // Qwen3: RMSNorm over head_dim on q and k
  // MiniMax-M2: q_norm / k_norm over all heads at once ([heads x head_dim], split across TP
  // ranks) instead of one head_dim vector shared by every head.
  bool qk_norm_all_heads = false;
  bool sinks = false;        // gpt-oss: one learned attention-sink logit per head [heads]
  bool output_gate = false;  // Qwen3-Next: q_proj also yields a sigmoid gate on the output
  std::int64_t rotary_dim = 0;  // dimensions rotated (partial RoPE: GLM, MiniMax); 0: head_dim
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
  bool router_bias = false;                   // DeepSeek-V3 e_score_correction_bias, gpt-oss's
                                              // router bias [experts]
  bool expert_bias = false;                   // gpt-oss: biases on every expert's projections
  std::int64_t first_k_dense = 0;             // layers [0, k) use the dense MLP
  std::vector<std::int64_t> dense_layers;     // further layers that use the dense MLP
};

// An image encoder that a multimodal checkpoint carries and vLLM loads (its weights take memory
// on every rank; tpp does not time it). Shapes from the checkpoint's vision_config.
enum class VisionKind { kSiglip, kLlama4 };
struct VisionTower {
  VisionKind kind = VisionKind::kSiglip;
  std::int64_t hidden_size = 0, intermediate_size = 0, num_layers = 0;
  std::int64_t image_size = 0, patch_size = 0, num_channels = 3;
  std::int64_t projector_input_dim = 0;   // Llama 4's vision adapter output
  std::int64_t projector_output_dim = 0;  // Llama 4's adapter width
  std::int64_t output_dim = 0;            // Llama 4's vision_output_dim (the projector's input)
};

enum class AttentionKind { kMHA, kGQA, kMQA, kMLA };
const char* attention_kind_name(AttentionKind k);

// How one decoder layer attends, which decides its KV-cache spec in vLLM V1
// (vllm/v1/kv_cache_interface.py): every past token (FullAttentionSpec), the last
// `sliding_window` tokens (SlidingWindowSpec: Gemma 2/3, gpt-oss, Mistral), or the tokens of its
// own chunk of `attention_chunk_size` (ChunkedLocalAttentionSpec: Llama 4), or none at all: a
// linear-attention layer keeps a fixed-size state per sequence instead (MambaSpec: Qwen3-Next's
// gated delta net).
enum class LayerAttention { kFull, kSlidingWindow, kChunkedLocal, kLinear };
const char* layer_attention_name(LayerAttention k);  // "full", "sliding", "chunked", "linear"

// Qwen3-Next's gated delta net (vllm/model_executor/models/qwen3_next.py
// Qwen3NextGatedDeltaNet): q and k of num_key_heads x key_head_dim, v and the output gate z of
// num_value_heads x value_head_dim, a causal depthwise conv of conv_kernel taps over q, k and v,
// and a [value_heads, value_head_dim, key_head_dim] recurrent state per sequence.
struct LinearAttention {
  std::int64_t num_key_heads = 0, num_value_heads = 0;
  std::int64_t key_head_dim = 0, value_head_dim = 0;
  std::int64_t conv_kernel = 0;
  std::int64_t key_dim() const { return num_key_heads * key_head_dim; }
  std::int64_t value_dim() const { return num_value_heads * value_head_dim; }
  std::int64_t conv_dim() const { return 2 * key_dim() + value_dim(); }
};

// DeepSeek-V3.2's sparse attention: a lightning indexer (its own heads over q_lora and hidden,
// and a K cache of head_dim fp8 values plus a scale per 128) picks the index_topk cached tokens
// each query attends to (vllm/model_executor/models/deepseek_v2.py Indexer).
struct SparseIndexer {
  std::int64_t num_heads = 0, head_dim = 0, topk = 0;
};

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
  // Gemma 2/3: a norm before and one after the MLP as well (four RMSNorms a layer).
  bool sandwich_norms = false;
  DType dtype = DType::kBF16;          // activation / unquantized weight dtype
  Attention attention;
  std::optional<Mla> mla;
  std::optional<Moe> moe;
  std::int64_t mtp_layers = 0;         // DeepSeek multi-token prediction (not loaded by vLLM
                                       // unless speculative decoding asks for it)
  // How each main layer attends; empty: every layer full attention. Sliding-window and chunked
  // layers keep only their window / chunk in the KV cache (vLLM's hybrid KV-cache manager).
  std::vector<LayerAttention> layer_attention;
  std::int64_t sliding_window = 0;        // tokens a kSlidingWindow layer attends to
  std::int64_t attention_chunk_size = 0;  // tokens of a kChunkedLocal layer's chunks
  std::optional<LinearAttention> linear_attention;  // the kLinear layers' shape
  std::optional<SparseIndexer> indexer;             // DeepSeek-V3.2's, on every MLA layer
  Quantization quant;
  KvCacheDType kv_cache_dtype = KvCacheDType::kAuto;
  std::optional<VisionTower> vision;  // the image encoder vLLM loads beside the language model

  AttentionKind attention_kind() const;
  bool is_moe_layer(std::int64_t layer) const;  // layer in [0, num_layers + mtp_layers)
  std::int64_t num_moe_layers() const;          // among the num_layers main layers
  // How layer `layer` attends (MTP layers: full).
  LayerAttention layer_attention_of(std::int64_t layer) const;
  // Whether some layer is not full attention (then vLLM groups the KV cache by spec): sliding,
  // chunked or linear.
  bool windowed_attention() const;
};

}  // namespace tpp::model
