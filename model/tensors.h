// The model's weight tensors, as vLLM builds them, and what they add up to. Parameter counts
// are exact sums of tensor shapes (checked against published totals in tests/model_test.cc);
// weight bytes add the storage format: packed integers, fp8 block scales, group scales.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace tpp::model {

enum class Component {
  kEmbedding,      // embed_tokens
  kAttention,      // q/k/v/o or MLA projections, their biases and inner norms
  kMlp,            // dense gate/up/down
  kRouter,         // MoE gate (and its correction bias)
  kExperts,        // routed experts
  kSharedExperts,  // shared experts (and Qwen2-MoE's shared_expert_gate)
  kNorms,          // input/post-attention layer norms and the final norm
  kLmHead,         // lm_head (absent when tied)
  kMtp,            // DeepSeek multi-token-prediction modules, everything in them
  kVision,         // a multimodal checkpoint's image encoder and its projector
  kCount
};
inline constexpr int kNumComponents = static_cast<int>(Component::kCount);
const char* component_name(Component c);  // "embedding", "attention", ...

// How vLLM shards the tensor across tensor-parallel ranks.
enum class Split {
  kReplicated,  // ReplicatedLinear, norms, routers
  kColumn,      // ColumnParallelLinear / QKVParallelLinear / MergedColumnParallelLinear: rows
  kKvHeads,     // the K and V parts of QKVParallelLinear: rows by KV head, each head replicated
                // on tp / num_kv_heads ranks when tp > num_kv_heads
  kRow,         // RowParallelLinear: cols
  kVocab,       // VocabParallelEmbedding / ParallelLMHead: rows (vocab)
  kExpertColumn,  // FusedMoE w1/w3: each expert's intermediate rows across TP, or whole
                  // experts across EP ranks
  kExpertRow,     // FusedMoE w2: each expert's intermediate input across TP, or whole experts
};

struct TensorSpec {
  std::string name;  // e.g. "self_attn.q_proj.weight"
  Component component;
  Split split;
  std::int64_t rows;   // output features ([rows, cols] as in PyTorch); vectors have cols = 1
  std::int64_t cols;   // input features
  std::int64_t count;  // stacked copies (the routed experts); 1 otherwise
  bool quantized;      // stored in the checkpoint's quantized format
  std::int64_t params() const { return rows * cols * count; }
};

// Tensors of decoder layer `layer` (0-based); for layer >= num_layers, the MTP module
// layer - num_layers (its decoder layer plus embed, enorm, hnorm, eh_proj and shared head).
std::vector<TensorSpec> layer_tensors(const Model& m, std::int64_t layer);
// embed_tokens, the final norm, lm_head (unless tied).
std::vector<TensorSpec> global_tensors(const Model& m);
// The image encoder and projector of a multimodal checkpoint (empty without Model::vision):
// SigLIP (Gemma 3, vllm/model_executor/models/siglip.py) or Llama 4's (mllama4.py).
std::vector<TensorSpec> vision_tensors(const Model& m);

// Where a checkpoint tensor goes among vLLM's merged parameters: q/k/v into qkv_proj
// (QKVParallelLinear), gate/up into gate_up_proj (MergedColumnParallelLinear), the experts'
// w1/w3 into w13_weight (FusedMoE; rows [part x rows ..) of each expert's block), everything
// else as it is, under vLLM's `model.` prefix (lm_head as it is). MLA's q_proj stays as it is
// (no k_proj or v_proj to merge with). The executor lays its buffers out by it; the step model
// times a merged parameter as one GEMM.
struct VllmParameter {
  std::string name;
  std::int64_t part = 0;  // which of the merged parts (0 for an unmerged tensor)
};
VllmParameter vllm_parameter(const std::string& checkpoint_name, bool mla);

// Bytes the tensor occupies in the checkpoint's format (see docs/model-schema.md, "Weight
// storage"): unquantized at Model::dtype; fp8 at 1 byte plus fp32 block scales; int4 packed
// 8 per int32 plus fp16 group scales, zero points and GPTQ's g_idx; int8 plus its scales.
std::int64_t storage_bytes(const TensorSpec& t, const Model& m);
// Scale/zero-point/index elements the quantized format adds (counted as tensor entries in a
// safetensors file, not as parameters).
std::int64_t aux_elements(const TensorSpec& t, const Model& m);

// Integer weights packed into int32 along the output (AWQ, GPTQ, compressed-tensors WNA16):
// 32 / bits values each (8 for int4, 4 for int8); 1 for every other format.
std::int64_t int_pack_factor(const Quantization& q);

struct Totals {
  std::array<std::int64_t, kNumComponents> by_component{};
  std::int64_t total = 0;
  std::int64_t get(Component c) const { return by_component[static_cast<int>(c)]; }
};

// Parameters and bytes of the whole model, its image encoder included; MTP modules only when
// include_mtp.
Totals param_totals(const Model& m, bool include_mtp);
Totals weight_byte_totals(const Model& m, bool include_mtp);

}  // namespace tpp::model
