// One rank's part of the model: the layers of its pipeline stage (the same ranges the memory
// model assigns, sim::pp_partition), their TP shards, the embedding on the first stage, the
// final norm and LM head on the last, and a paged KV cache of the plan's blocks. A step runs a
// batch the scheduler formed: every sequence's new tokens at their positions, K and V written to
// their blocks, attention over each sequence's cache.
//
// What runs is vLLM's layout: column-parallel QKV and gate/up, row-parallel O and down followed
// by a TP all-reduce, a vocabulary-parallel embedding (all-reduce) and LM head (all-gather),
// Mixtral-style MoE with experts split over TP or, with expert parallelism, whole experts per
// rank, and DeepSeek's MLA with its latent cache replicated over TP (weights absorbed). The
// numbers are float32 on the CPU backend.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <optional>
#include <vector>

#include "executor/backend.h"
#include "executor/layout.h"
#include "executor/weights.h"
#include "model/model.h"
#include "simulator/parallel.h"

namespace tpp::exec {

// One sequence's part of a step.
struct StepSeq {
  std::int64_t id = 0;                 // the scheduler's sequence index
  std::int64_t new_tokens = 0, context = 0;
  std::vector<std::int32_t> blocks;    // its block table, covering context + new_tokens
  std::vector<std::int64_t> tokens;    // the new tokens' ids (the first stage embeds them)
  bool samples = false;                // this step completes its pending tokens: sample one
};

struct Step {
  std::int64_t id = 0;
  std::vector<StepSeq> seqs;
  std::int64_t rows() const;
};

// What a stage hands on: the hidden states and residual of every row (to the next stage), or on
// the last stage the sampled token of every sampling sequence and, when kept, its logits.
struct StageOut {
  std::vector<float> hidden, residual;  // [rows, hidden_size]
  std::vector<std::int64_t> tokens;     // one per sampling sequence, in batch order
  std::vector<float> logits;            // [sampling sequences, vocab] when keep_logits
};

// The checkpoint tensors stage `pp_rank` holds (a shard of): the embedding on the first stage
// (and the last when tied), its layers, the final norm and the LM head on the last.
std::vector<model::TensorSpec> stage_tensors(const model::Model& m, const sim::ParallelConfig& p,
                                            int pp_rank);

class Decoder {
 public:
  // `loaded`: the model as it runs (sim::as_loaded). `num_blocks` x `block_size`: the KV pool.
  // `max_rows`: the most rows a step runs (max_num_batched_tokens); the activations are
  // allocated for it at once (a GPU backend's captured graphs need fixed buffers). 0: grown
  // as steps need.
  Decoder(const model::Model& loaded, const sim::ParallelConfig& p, const Place& at,
          Backend& backend, std::int64_t num_blocks, std::int64_t block_size,
          std::int64_t max_rows = 0);
  ~Decoder();

  // The seeded weights (weights.h) of this rank's shards. Returns the bytes it holds.
  std::int64_t load_seeded();
  // This rank's weights by buffer name, for saving: host copies, float32.
  struct Tensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<float> values;
    const float* data;  // values.data()
  };
  std::vector<Tensor> tensors() const;
  // Sets one tensor's values (a loader's); false when the name or size is not this rank's.
  bool set_tensor(const std::string& name, const std::vector<float>& values);
  // Checks that every tensor was set; the first missing name otherwise.
  std::optional<std::string> missing_tensor() const;
  // The checkpoint tensors this rank's stage holds a shard of, and where its shard lies.
  std::vector<model::TensorSpec> stage_tensors() const;
  ShardMap shard(const model::TensorSpec& t) const;
  // Sets one of this rank's own buffers (vLLM's parameter names, as tensors() gives them);
  // false when the name or the size is not this rank's.
  bool set_buffer(const std::string& name, const std::vector<float>& values);
  // After a loader has set every tensor: what the forward derives from them (MLA's absorbed
  // per-head matrices).
  void finish_load();

  bool first_stage() const { return first_; }
  bool last_stage() const { return last_; }
  std::int64_t hidden_size() const { return m_.hidden_size; }
  std::int64_t first_layer() const { return layer0_; }
  std::int64_t num_layers() const { return layers_; }
  std::int64_t kv_pool_bytes() const { return pool_bytes_; }
  // The bytes this rank's weights take in the backend (its weight type for matrices).
  std::int64_t weight_bytes() const;
  std::int64_t rows_capacity() const { return cap_; }

  // Runs the stage. The first stage reads step.seqs[].tokens; the others `in` (hidden and
  // residual from the previous stage), or, with `in` null, what was received straight into
  // hidden_buffer() and residual_buffer() (a GPU's stage hand-off over NCCL).
  std::optional<Error> forward(const Step& step, const StageOut* in, StageOut& out,
                               bool keep_logits);
  // Called between operators (after each layer's attention and after its MLP): a replica's
  // driver, which is also its first stage, takes in finished batches there rather than after
  // the whole stage, as vLLM's scheduler (a process of its own) would.
  void set_hook(std::function<std::optional<Error>()> hook) { hook_ = std::move(hook); }
  // Stage hand-offs in the backend's memory: a stage that is not the last leaves its output in
  // hidden_buffer() / residual_buffer() ([rows, hidden] each) instead of copying it to `out`.
  void set_device_handoff(bool on) { handoff_ = on; }
  float* hidden_buffer(std::int64_t rows) { ensure_rows(rows + 8); return hidden_; }
  float* residual_buffer(std::int64_t rows) { ensure_rows(rows + 8); return residual_; }

 private:
  struct Buf {
    std::string name;
    std::vector<std::int64_t> shape;
    float* data = nullptr;
    std::int64_t size = 0;
    bool weight = false;  // a matrix, in the backend's weight type; vectors are float32
    bool set = false;
  };
  struct Layer;
  // Where a checkpoint tensor's shard lies among this rank's buffers.
  struct Site {
    Buf* buf = nullptr;
    const model::TensorSpec* spec = nullptr;
    ShardMap sm;
    std::int64_t row_offset = 0, buf_rows = 0, cols = 0;
  };
  std::optional<Site> locate(const std::string& name);
  float* weight(const std::string& name);
  Buf* find(const std::string& name);
  void add_buffer(const std::string& name, std::vector<std::int64_t> shape);
  void ensure_rows(std::int64_t rows);
  void ensure_samples(std::int64_t samples);
  std::optional<Error> attention(Layer& l, const Step& step, const float* x, float* out);
  std::optional<Error> mla(Layer& l, const Step& step, const float* x, float* out);
  std::optional<Error> mlp(Layer& l, const float* x, std::int64_t rows, float* out);
  std::optional<Error> moe(Layer& l, const float* x, std::int64_t rows, float* out);
  void dense_mlp(const std::string& prefix, const float* x, std::int64_t rows, float* out,
                 bool bias);

  model::Model m_;
  sim::ParallelConfig p_;
  Place at_;
  Backend& b_;
  std::int64_t blocks_, block_size_, layer0_ = 0, layers_ = 0, pool_bytes_ = 0;
  bool first_ = false, last_ = false;
  std::vector<Buf> bufs_;
  std::vector<Layer*> layer_ptrs_;
  std::vector<std::unique_ptr<Layer>> layer_store_;
  std::vector<model::TensorSpec> specs_;  // the checkpoint tensors of this stage
  Rope rope_, mla_rope_;
  StepMeta meta_;
  std::int64_t meta_rows_ = 0;  // the rows this step's layers run on (padded on a GPU)
  std::int64_t inter_max_ = 0;  // the widest dense MLP (or shared expert) of the stage
  // Activations in the backend's memory, for cap_ rows (samples: cap_s_ rows).
  std::int64_t cap_ = 0, cap_s_ = 0;
  float *hidden_ = nullptr, *residual_ = nullptr, *x_ = nullptr, *y_ = nullptr;
  float *a_ = nullptr, *b_q_ = nullptr, *b_kv_ = nullptr, *c_ = nullptr, *d_ = nullptr;
  float *e_ = nullptr, *g_ = nullptr, *act_ = nullptr, *shared_ = nullptr, *gate_ = nullptr;
  float *hs_ = nullptr, *rs_ = nullptr, *ns_ = nullptr, *local_ = nullptr, *gathered_ = nullptr,
        *logits_ = nullptr;
  std::function<std::optional<Error>()> hook_;
  bool handoff_ = false;
};

}  // namespace tpp::exec
