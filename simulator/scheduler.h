// vLLM V1's scheduler, as a state machine with no clock of its own: the serving simulation
// drives it with predicted step times, and the executor can drive the same code with the real
// clock. Semantics (vllm/v1/core/sched/scheduler.py Scheduler.schedule):
// - one token budget per step (max_num_batched_tokens), at most max_num_seqs running;
// - running requests first, in admission order: a decode takes 1 token, an unfinished prefill
//   a chunk of what is left (chunked prefill, always on in V1);
// - KV blocks of block_size tokens come from one pool; when a running request needs a block and
//   none is free, the last-admitted running request is preempted by recomputation (its blocks
//   freed, its progress reset, back to the front of the waiting queue);
// - waiting requests are admitted in arrival order only in a step without preemptions, while
//   their first chunk's blocks are free;
// - a step that completes a request's pending tokens samples one new token.
// Requests not finished by a batch in flight are not scheduled again (V1's batch queue for PP).
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <unordered_map>
#include <vector>

#include "simulator/kv_groups.h"
#include "simulator/step_cost.h"
#include "simulator/workload.h"

namespace tpp::sim {

struct SchedulerConfig {
  std::int64_t max_num_seqs = 256;
  std::int64_t max_num_batched_tokens = 2048;
  std::int64_t block_size = 16;
  std::int64_t num_blocks = 0;
  std::int64_t max_model_len = 0;
  // vLLM V1's automatic prefix caching (on by default in V1): a preempted request's full blocks
  // stay in the free queue with their contents until other allocations evict them (the free
  // queue is LRU, and a request's blocks are freed tail first, vllm/v1/core/block_pool.py and
  // kv_cache_manager.py), so when it is scheduled again only the evicted part is recomputed.
  bool prefix_caching = false;
  // TensorRT-LLM's GUARANTEED_NO_EVICT capacity policy (its default, tensorrt_llm/_torch/pyexecutor/
  // scheduler.py GuaranteedNoEvictScheduler): a request is admitted only when the blocks of its
  // whole prompt and output are free, and holds them from then on, so nothing is ever preempted.
  bool reserve_whole_request = false;
  // Whether a prompt may be computed over several steps (TensorRT-LLM's default is no:
  // enable_chunked_prefill False; a prompt is then one step's, whole, and one longer than
  // max_num_batched_tokens is refused).
  bool chunked_prefill = true;
  // SGLang's scheduler (sglang/srt/managers/scheduler.py, schedule_policy.py, schedule_batch.py,
  // v0.5.6) instead of vLLM's:
  // - a step is either a prefill batch or a decode of every running request, never both
  //   (enable_mixed_chunk off by default), and prefill goes first;
  // - a prefill batch takes the unfinished prompt first, then waiting requests in arrival order,
  //   up to max_num_batched_tokens (chunked_prefill_size) and max_prefill_tokens new tokens; the
  //   request that does not fit whole is chunked and ends the batch;
  // - a request is admitted while its prompt plus its clipped output (at most 4096 tokens) is
  //   below the free tokens less every running request's clipped remaining output x
  //   new_token_ratio and less what this batch already admitted (PrefillAdder);
  // - new_token_ratio starts at 0.7 and falls by (0.7 - 0.098) / 600 each decode step to 0.098;
  // - a decode without a free token for every running request retracts requests, fewest
  //   output tokens first (then the longest prompt), back to the waiting queue's end with
  //   their tokens freed, and sets the ratio to (decoded + 20 x running) / (their max outputs + 1).
  bool sglang = false;
  std::int64_t max_prefill_tokens = 0;  // SGLang's; 0: no limit beside the chunk
  // How the model's layers share the pool (simulator/kv_groups.h). No kinds, or one group of
  // full attention: each block holds block_size tokens of every layer. Otherwise a request
  // holds blocks in each group for the tokens that group's layers still attend to, and frees
  // those its windows have passed. A preempted request's prefix is reused only while none of
  // its blocks has been evicted, and only for full and sliding-window groups.
  KvGroups kv_groups{};
};

struct ScheduledSeq {
  std::int32_t seq;         // index into Scheduler::seqs()
  std::int64_t new_tokens;  // tokens computed this step
  std::int64_t context;     // tokens already in the KV cache
};

struct Batch {
  std::vector<ScheduledSeq> items;
  BatchShape shape;
  bool empty() const { return items.empty(); }
};

// Why a request was refused on arrival (vLLM refuses both before scheduling: a prompt plus
// max_tokens over max_model_len in the API server's input validation; more KV blocks than the
// whole pool in the engine's admission).
// TensorRT-LLM without chunked prefill refuses a prompt longer than max_num_tokens.
enum class Rejection { kNone, kOverMaxModelLen, kOverKvCache, kOverBatchTokens };

struct Seq {
  Request req;
  std::int64_t computed = 0;   // tokens whose KV is cached
  std::int64_t generated = 0;  // output tokens sampled
  std::int64_t blocks = 0;
  bool in_flight = false, running = false, finished = false, rejected = false;
  Rejection rejection = Rejection::kNone;
  std::int64_t preemptions = 0;
  std::int64_t admitted = 0;  // when it joined the running requests (their order)
  double first_token_s = -1, last_token_s = -1, finish_s = -1;
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerConfig& config);

  // A request arrives. One that can never fit (longer than max_model_len, or more blocks than
  // the whole pool) is rejected, as vLLM rejects it.
  void add(const Request& r, double now);
  void reserve(std::size_t requests) { seqs_.reserve(requests); }
  Batch schedule();
  // A completed batch's storage, for a later schedule() to fill (no allocation a step).
  void recycle(Batch&& b) {
    b.items.clear();
    spare_.push_back(std::move(b.items));
  }
  // The batch's forward pass finished at `now`. Inter-token gaps (ms) go to `itl_s`.
  // Returns how many requests finished.
  std::int64_t complete(const Batch& b, double now, std::vector<double>* itl_s);

  const std::vector<Seq>& seqs() const { return seqs_; }
  std::int64_t unfinished() const { return unfinished_; }
  std::int64_t used_blocks() const { return config_.num_blocks - free_blocks_; }
  std::int64_t preemptions() const { return preemptions_; }
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  std::size_t waiting() const { return waiting_.size(); }
  // Whether schedule() could return a batch: a request waits, or a running one is not in
  // flight. Where it cannot, idle() does what schedule() would (SGLang's ratio, reset when
  // nothing runs), without building an empty batch.
  bool can_schedule() const { return !waiting_.empty() || !ready_.empty(); }
  void idle();

 private:
  std::int64_t blocks_for(std::int64_t tokens) const;
  // Blocks a request holds with `computed` tokens cached and `n` more being computed.
  std::int64_t held(std::int64_t computed, std::int64_t n) const;
  // The most blocks a request of `tokens` tokens holds.
  std::int64_t peak(std::int64_t tokens) const;
  bool grouped_ = false;  // kv_groups other than one group of full attention
  void preempt(std::int32_t i);
  bool schedule_running(Batch& b, std::int64_t& budget);
  void schedule_waiting(Batch& b, std::int64_t& budget);
  void take(Batch& b, std::int32_t i, std::int64_t n, std::int64_t need, std::int64_t& budget);
  // SGLang's step (SchedulerConfig::sglang).
  Batch schedule_sglang(Batch b);
  void retract_for_decode(std::int64_t need);
  double new_token_ratio_ = 0;
  // The free queue, in eviction order: runs of blocks, each a preempted request's (whose full
  // blocks hold its first tokens) or nobody's. Allocation takes from the front.
  struct FreeRun {
    std::int32_t owner = -1;  // a preempted request, or -1
    std::int64_t count = 0;   // blocks in the run
    std::int64_t full = 0;    // of them, the owner's full blocks (its cached prefix)
  };
  void release(std::int32_t owner, std::int64_t blocks, std::int64_t full);
  void allocate(std::int64_t blocks);
  std::int64_t cached_blocks(std::int32_t i) const;
  std::list<FreeRun> free_runs_;
  std::unordered_map<std::int32_t, std::list<FreeRun>::iterator> cached_;

  SchedulerConfig config_;
  std::vector<Seq> seqs_;
  std::deque<std::int32_t> waiting_;
  std::vector<std::int32_t> running_;  // admission order
  // The running requests not in a batch in flight, in admission order: with PP most running
  // requests are in flight, and a step looks only at these.
  std::vector<std::int32_t> ready_, merged_;
  std::vector<double> adder_taken_;  // schedule_sglang's scratch
  std::vector<std::vector<ScheduledSeq>> spare_;  // recycle()
  std::int64_t admissions_ = 0;
  void admit(std::int32_t i);         // to the end of running_
  void drop_taken();                  // ready_ without the requests this step took
  std::int64_t free_blocks_;
  std::int64_t unfinished_ = 0;
  std::int64_t preemptions_ = 0;
};

}  // namespace tpp::sim
