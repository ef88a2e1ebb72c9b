#include "simulator/scheduler.h"

#include <algorithm>

namespace tpp::sim {

namespace {
// SGLang v0.5.6 (sglang/srt/environ.py, managers/scheduler.py): SGLANG_INIT_NEW_TOKEN_RATIO 0.7
// x schedule_conservativeness 1.0, SGLANG_MIN_NEW_TOKEN_RATIO_FACTOR 0.14,
// SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS 600, SGLANG_RETRACT_DECODE_STEPS 20,
// SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION 4096.
constexpr double kSglangInitRatio = 0.7;
constexpr double kSglangMinRatio = 0.7 * 0.14;
constexpr double kSglangRatioDecay = (kSglangInitRatio - kSglangMinRatio) / 600;
constexpr double kSglangRetractDecodeSteps = 20;
constexpr std::int64_t kSglangClipNewTokens = 4096;
}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config)
    : config_(config), free_blocks_(config.num_blocks) {
  new_token_ratio_ = kSglangInitRatio;
  if (config_.num_blocks > 0) free_runs_.push_back({-1, config_.num_blocks, 0});
  grouped_ = !config_.kv_groups.kinds.empty() && !config_.kv_groups.uniform_full();
  // vLLM's prefix cache serves full-attention and sliding-window groups
  // (FullAttentionManager / SlidingWindowManager.find_longest_cache_hit); tpp keeps it off for
  // the others (chunked local attention, and linear layers' states under mamba_cache_mode
  // "none").
  if (grouped_)
    for (const auto& k : config_.kv_groups.kinds)
      if (k.kind != model::LayerAttention::kFull && k.kind != model::LayerAttention::kSlidingWindow)
        config_.prefix_caching = false;
}

// Blocks back to the free queue's end. A preempted request's run is freed tail first (its last,
// partial block nearest the front), so eviction eats its prefix from the end.
void Scheduler::release(std::int32_t owner, std::int64_t blocks, std::int64_t full) {
  if (blocks <= 0) return;
  free_blocks_ += blocks;
  if (owner < 0 || !config_.prefix_caching || full <= 0) {
    if (!free_runs_.empty() && free_runs_.back().owner < 0)
      free_runs_.back().count += blocks;
    else
      free_runs_.push_back({-1, blocks, 0});
    return;
  }
  free_runs_.push_back({owner, blocks, std::min(full, blocks)});
  cached_[owner] = std::prev(free_runs_.end());
}

// Takes blocks from the front of the free queue, evicting what preempted requests left there.
void Scheduler::allocate(std::int64_t blocks) {
  free_blocks_ -= blocks;
  while (blocks > 0 && !free_runs_.empty()) {
    FreeRun& r = free_runs_.front();
    const std::int64_t t = std::min(blocks, r.count);
    r.count -= t;
    // A hybrid run is all or nothing: a hit at h tokens needs the sliding window's blocks just
    // before h (cdiv(window - 1, block_size) of them, SlidingWindowManager), and a run holds
    // them only for h = its computed tokens; the older window blocks were freed while it ran,
    // nearer the queue's front, and are gone before any of the run is. (vLLM may still reuse
    // part of a prompt shorter than the window; tpp recomputes it: the safe side.)
    r.full = grouped_ && t > 0 ? 0 : std::min(r.full, r.count);
    blocks -= t;
    if (r.count == 0) {
      if (r.owner >= 0) cached_.erase(r.owner);
      free_runs_.pop_front();
    }
  }
}

std::int64_t Scheduler::cached_blocks(std::int32_t i) const {
  auto it = cached_.find(i);
  return it == cached_.end() ? 0 : it->second->full;
}

std::int64_t Scheduler::blocks_for(std::int64_t tokens) const {
  return (tokens + config_.block_size - 1) / config_.block_size;
}

std::int64_t Scheduler::held(std::int64_t computed, std::int64_t n) const {
  return grouped_ ? config_.kv_groups.held(computed, n) : blocks_for(computed + n);
}

std::int64_t Scheduler::peak(std::int64_t tokens) const {
  return grouped_ ? config_.kv_groups.peak(tokens, config_.max_num_batched_tokens)
                  : blocks_for(tokens);
}

void Scheduler::add(const Request& r, double now) {
  Seq s;
  s.req = r;
  s.req.arrival_s = now;
  const std::int64_t total = r.input_tokens + r.output_tokens;
  if (config_.max_model_len > 0 && total > config_.max_model_len)
    s.rejection = Rejection::kOverMaxModelLen;
  else if (peak(total) > config_.num_blocks)
    s.rejection = Rejection::kOverKvCache;
  else if (config_.sglang &&
           r.input_tokens + std::min(r.output_tokens, kSglangClipNewTokens) >= config_.num_blocks * config_.block_size)
    s.rejection = Rejection::kOverKvCache;  // PrefillAdder would never find room for it
  else if (!config_.chunked_prefill && r.input_tokens > config_.max_num_batched_tokens)
    s.rejection = Rejection::kOverBatchTokens;
  s.rejected = s.rejection != Rejection::kNone;
  s.computed = std::clamp<std::int64_t>(r.cached_tokens, 0, r.input_tokens - 1);
  seqs_.push_back(s);
  if (s.rejected) return;
  waiting_.push_back(static_cast<std::int32_t>(seqs_.size() - 1));
  ++unfinished_;
}

void Scheduler::preempt(std::int32_t i) {
  Seq& s = seqs_[static_cast<std::size_t>(i)];
  release(i, s.blocks, s.computed / config_.block_size);
  s.blocks = 0;
  s.computed = 0;  // recomputation: the prompt and the tokens generated so far
  s.running = false;
  ++s.preemptions;
  ++preemptions_;
  running_.erase(std::find(running_.begin(), running_.end(), i));
  if (auto it = std::find(ready_.begin(), ready_.end(), i); it != ready_.end()) ready_.erase(it);
  waiting_.push_front(i);
}

void Scheduler::admit(std::int32_t i) {
  Seq& s = seqs_[static_cast<std::size_t>(i)];
  running_.push_back(i);
  s.running = true;
  s.admitted = admissions_++;
}

void Scheduler::idle() {
  if (config_.sglang && running_.empty()) new_token_ratio_ = kSglangInitRatio;
}

void Scheduler::drop_taken() {
  std::erase_if(ready_, [&](std::int32_t i) { return seqs_[static_cast<std::size_t>(i)].in_flight; });
}

void Scheduler::take(Batch& b, std::int32_t i, std::int64_t n, std::int64_t need,
                     std::int64_t& budget) {
  Seq& s = seqs_[static_cast<std::size_t>(i)];
  s.blocks += need;
  allocate(need);
  s.in_flight = true;
  b.items.push_back({i, n, s.computed});
  b.shape.add(n, s.computed);
  budget -= n;
}

// Running requests, in admission order. Returns whether any request was preempted.
bool Scheduler::schedule_running(Batch& b, std::int64_t& budget) {
  bool preempted = false;
  for (std::size_t k = 0; k < ready_.size() && budget > 0; ++k) {
    const std::int32_t i = ready_[k];
    Seq& s = seqs_[static_cast<std::size_t>(i)];
    const std::int64_t n = std::min(s.req.input_tokens + s.generated - s.computed, budget);
    if (grouped_ && !config_.reserve_whole_request) {
      // Blocks the windows have passed go back to the pool first (remove_skipped_blocks).
      const std::int64_t keep = held(s.computed, 0);
      if (keep < s.blocks) {
        release(-1, s.blocks - keep, 0);
        s.blocks = keep;
      }
    }
    std::int64_t need = std::max<std::int64_t>(0, held(s.computed, n) - s.blocks);
    bool self_preempted = false;
    while (need > free_blocks_) {
      // Preempt the last-admitted running request that is not in flight (maybe this one): the
      // last of ready_, whose first k this step has taken.
      if (ready_.size() <= k) break;
      const std::int32_t v = ready_.back();
      preempt(v);  // (takes it out of ready_)
      preempted = true;
      if (v == i) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted || need > free_blocks_) break;
    take(b, i, n, need, budget);
  }
  drop_taken();
  return preempted;
}

void Scheduler::schedule_waiting(Batch& b, std::int64_t& budget) {
  while (!waiting_.empty() && budget > 0 &&
         static_cast<std::int64_t>(running_.size()) < config_.max_num_seqs) {
    const std::int32_t i = waiting_.front();
    Seq& s = seqs_[static_cast<std::size_t>(i)];
    // A preempted request finds the full blocks of its own prefix still cached (never all of
    // its tokens: vLLM computes at least the last one again). With several groups the hit
    // takes back the blocks every group holds at that point.
    const std::int64_t total = s.req.input_tokens + s.generated;
    // (A preempted request has computed at most total - 1 tokens, so the cap does not bind
    // today; kept for when a run may hold a whole request.)
    const std::int64_t cached = s.computed == 0 ? cached_blocks(i) : 0;
    std::int64_t hit = std::min(cached, (total - 1) / config_.block_size);  // token blocks
    if (grouped_ && hit < cached) hit = 0;  // the window before a shorter hit is gone
    const std::int64_t computed = s.computed + hit * config_.block_size;
    const std::int64_t hit_blocks =
        !grouped_ || hit == 0 ? hit : std::min(held(computed, 0), cached_.at(i)->count);
    const std::int64_t n = std::min(total - computed, budget);
    if (!config_.chunked_prefill && n < total - computed) break;  // the whole prompt, or wait
    const std::int64_t need =
        (config_.reserve_whole_request ? peak(s.req.input_tokens + s.req.output_tokens)
                                       : held(computed, n)) -
        s.blocks - hit_blocks;
    if (need > free_blocks_ - hit_blocks) break;
    if (hit > 0) {  // the cached blocks leave the free queue; the rest of the run is nobody's
      auto run = cached_.at(i);
      run->count -= hit_blocks;
      run->owner = -1;
      run->full = 0;
      cached_.erase(i);
      free_blocks_ -= hit_blocks;
      s.blocks += hit_blocks;
      s.computed = computed;
      if (run->count == 0) free_runs_.erase(run);
    } else if (s.computed == 0 && cached_.count(i)) {  // nothing reusable left: forget the run
      auto run = cached_.at(i);
      run->owner = -1;
      run->full = 0;
      cached_.erase(i);
    }
    waiting_.pop_front();
    admit(i);
    take(b, i, n, need, budget);
  }
}

Batch Scheduler::schedule() {
  Batch b;
  // The window the model's windowed layers attend to, for their share of the attention time.
  for (const auto& k : config_.kv_groups.kinds)
    if (k.window > 0 && b.shape.window == 0) {
      b.shape.window = k.window;
      b.shape.chunked = k.kind == model::LayerAttention::kChunkedLocal;
    }
  if (b.shape.window == 0) b.shape.window = config_.kv_groups.sparse_topk;
  if (!spare_.empty()) {
    b.items = std::move(spare_.back());
    spare_.pop_back();
  }
  b.items.reserve(running_.size() + waiting_.size() / 4 + 1);
  if (config_.sglang) return schedule_sglang(std::move(b));
  std::int64_t budget = config_.max_num_batched_tokens;
  if (!schedule_running(b, budget)) schedule_waiting(b, budget);
  return b;
}

Batch Scheduler::schedule_sglang(Batch b) {
  const std::int64_t bs = config_.block_size;
  std::int64_t chunk = config_.max_num_batched_tokens;
  std::int64_t input = config_.max_prefill_tokens > 0 ? config_.max_prefill_tokens : chunk;
  auto clipped_left = [](const Seq& s) {
    return std::min(s.req.output_tokens - s.generated, kSglangClipNewTokens);
  };
  // A running request still computing its prompt (a chunk at a time, or again after a
  // retraction); the others decode one token a step.
  auto prefilling = [](const Seq& s) {
    return s.generated == 0 || s.req.input_tokens + s.generated - s.computed > 1;
  };
  const std::int64_t free_at_start = free_blocks_;
  std::int64_t unused = 0;
  // The prompt already begun (SGLang's chunked_req) comes first. What each one takes from
  // PrefillAdder's budget is kept for the waiting requests' check below.
  auto& taken = adder_taken_;
  taken.clear();
  for (std::int32_t i : ready_) {
    Seq& s = seqs_[static_cast<std::size_t>(i)];
    if (!prefilling(s) || chunk <= 0) continue;
    const std::int64_t left = s.req.input_tokens + s.generated - s.computed;
    const std::int64_t n = std::min(left, chunk);
    const std::int64_t need = std::max<std::int64_t>(0, blocks_for(s.computed + n) - s.blocks);
    if (need > free_blocks_) break;
    take(b, i, n, need, unused);
    chunk -= n;
    input -= n;
    taken.push_back(static_cast<double>(n + (n == left ? clipped_left(s) : 0)));
  }
  if (!waiting_.empty() && chunk > 0 && input > 0 &&
      static_cast<std::int64_t>(running_.size()) < config_.max_num_seqs) {
    // PrefillAdder: the free tokens (as the step began) less the running requests' future
    // tokens at new_token_ratio, less what the begun prompts took.
    double rem_total = static_cast<double>(free_at_start * bs);
    for (std::int32_t i : running_) {
      const Seq& s = seqs_[static_cast<std::size_t>(i)];
      if (!prefilling(s)) rem_total -= static_cast<double>(clipped_left(s)) * new_token_ratio_;
    }
    for (double t : taken) rem_total -= t;
    while (!waiting_.empty() && chunk > 0 && input > 0 &&
           static_cast<std::int64_t>(running_.size()) < config_.max_num_seqs) {
      const std::int32_t i = waiting_.front();
      Seq& s = seqs_[static_cast<std::size_t>(i)];
      const std::int64_t extend = s.req.input_tokens + s.generated - s.computed;
      if (static_cast<double>(extend + clipped_left(s)) >= rem_total) break;  // NO_TOKEN
      if (extend >= input && !b.empty()) break;                                // OTHER
      const std::int64_t n = std::min(extend, chunk);
      const std::int64_t need = std::max<std::int64_t>(0, blocks_for(s.computed + n) - s.blocks);
      if (need > free_blocks_) break;
      waiting_.pop_front();
      admit(i);
      take(b, i, n, need, unused);
      chunk -= n;
      input -= n;
      rem_total -= static_cast<double>(n + (n == extend ? clipped_left(s) : 0));
      if (n < extend) break;  // chunked: it ends the batch
    }
  }
  if (!b.empty()) {
    drop_taken();
    return b;
  }
  // A decode of every running request, one token each.
  std::int64_t need = 0, decoders = 0;
  const bool in_flight = ready_.size() < running_.size();
  for (std::int32_t i : ready_) {
    const Seq& s = seqs_[static_cast<std::size_t>(i)];
    if (!prefilling(s)) need += blocks_for(s.computed + 1) - s.blocks, ++decoders;
  }
  if (running_.empty()) new_token_ratio_ = kSglangInitRatio;  // idle: back to the start
  if (decoders > 0) {
    // The ratio falls once a decode step (update_running_batch); a retraction sets it anew.
    if (need > free_blocks_) retract_for_decode(need);
    else new_token_ratio_ = std::max(new_token_ratio_ - kSglangRatioDecay, kSglangMinRatio);
  }
  for (std::int32_t i : ready_) {
    const Seq& s = seqs_[static_cast<std::size_t>(i)];
    if (prefilling(s)) continue;
    const std::int64_t more = blocks_for(s.computed + 1) - s.blocks;
    if (more > free_blocks_) continue;  // the one left after retracting all others: waits
    take(b, i, 1, more, unused);
  }
  drop_taken();
  if (b.empty() && !in_flight && !running_.empty()) {
    // Nothing can run: begun prompts hold blocks that none of them can finish in (with PP a
    // second prompt may be chunked while the first is in flight). SGLang keeps one chunked
    // request at a time; the newest gives its blocks back and waits at the queue's front.
    for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
      Seq& s = seqs_[static_cast<std::size_t>(*it)];
      if (!prefilling(s) || s.blocks == 0) continue;
      preempt(*it);  // (SGLang keeps no prefix cache: its blocks simply go back)
      return schedule_sglang(std::move(b));
    }
  }
  return b;
}

// schedule_batch.py retract_decode: requests sorted by (output tokens, -prompt tokens),
// retracted from the fewest outputs (and longest prompt among equals) until the rest fit.
void Scheduler::retract_for_decode(std::int64_t need) {
  std::vector<std::int32_t> order;
  for (std::int32_t i : ready_) {
    const Seq& s = seqs_[static_cast<std::size_t>(i)];
    if (!s.in_flight && s.generated > 0 && s.req.input_tokens + s.generated - s.computed <= 1) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t c) {
    const Seq &x = seqs_[static_cast<std::size_t>(a)], &y = seqs_[static_cast<std::size_t>(c)];
    if (x.generated != y.generated) return x.generated > y.generated;
    return x.req.input_tokens < y.req.input_tokens;
  });
  while (need > free_blocks_ && order.size() > 1) {
    const std::int32_t v = order.back();
    order.pop_back();
    Seq& s = seqs_[static_cast<std::size_t>(v)];
    need -= blocks_for(s.computed + 1) - s.blocks;
    preempt(v);  // then to the queue's end, as SGLang appends a retracted request
    waiting_.pop_front();
    waiting_.push_back(v);
  }
  double decoded = 0, max_new = 0;
  for (std::int32_t i : order) {
    decoded += static_cast<double>(seqs_[static_cast<std::size_t>(i)].generated);
    max_new += static_cast<double>(seqs_[static_cast<std::size_t>(i)].req.output_tokens);
  }
  new_token_ratio_ = std::min(
      1.0, (decoded + kSglangRetractDecodeSteps * static_cast<double>(order.size())) / (max_new + 1));
}

std::int64_t Scheduler::complete(const Batch& b, double now, std::vector<double>* itl_s) {
  std::int64_t finished = 0;
  merged_.clear();
  for (const ScheduledSeq& item : b.items) {
    Seq& s = seqs_[static_cast<std::size_t>(item.seq)];
    s.in_flight = false;
    if (!s.running) continue;  // preempted while in flight cannot happen; kept for safety
    s.computed += item.new_tokens;
    if (s.computed >= s.req.input_tokens + s.generated) {  // else the prefill is not done yet
      ++s.generated;
      if (s.first_token_s < 0) s.first_token_s = now;
      else if (itl_s) itl_s->push_back((now - s.last_token_s) * 1e3);  // ms
      s.last_token_s = now;
      if (s.generated >= s.req.output_tokens) {
        s.finished = true;
        s.running = false;
        s.finish_s = now;
        release(-1, s.blocks, 0);
        s.blocks = 0;
        running_.erase(std::find(running_.begin(), running_.end(), item.seq));
        --unfinished_;
        ++finished;
        continue;
      }
    }
    merged_.push_back(item.seq);  // still running: ready again
  }
  if (!merged_.empty()) {
    // Back among the ready requests in admission order (a batch takes them in that order).
    auto by_admission = [&](std::int32_t x, std::int32_t y) {
      return seqs_[static_cast<std::size_t>(x)].admitted < seqs_[static_cast<std::size_t>(y)].admitted;
    };
    if (!std::is_sorted(merged_.begin(), merged_.end(), by_admission))
      std::sort(merged_.begin(), merged_.end(), by_admission);
    const std::size_t mid = ready_.size();
    ready_.insert(ready_.end(), merged_.begin(), merged_.end());
    if (mid > 0 && by_admission(ready_[mid], ready_[mid - 1]))
      std::inplace_merge(ready_.begin(), ready_.begin() + static_cast<std::ptrdiff_t>(mid), ready_.end(), by_admission);
  }
  return finished;
}

}  // namespace tpp::sim
