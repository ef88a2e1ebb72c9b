#include "executor/engine.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <new>
#include <tuple>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/host.h"
#include "executor/checkpoint.h"
#include "executor/decoder.h"
#include "simulator/memory.h"
#include "simulator/scheduler.h"

namespace tpp::exec {
namespace {

enum Tag : int { kStep = 1, kHidden = 2, kTokens = 3, kReport = 10, kSeqs = 11, kSamples = 12, kStageLog = 13 };

// ---- A byte buffer of int64 and double values: how steps and reports travel.

struct Writer {
  std::vector<std::uint8_t> bytes;
  template <class T>
  void put(T v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  template <class T>
  void put_all(const std::vector<T>& v) {
    put<std::int64_t>(static_cast<std::int64_t>(v.size()));
    const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
    bytes.insert(bytes.end(), p, p + v.size() * sizeof(T));
  }
};

struct Reader {
  const std::vector<std::uint8_t>& bytes;
  std::size_t at = 0;
  template <class T>
  T get() {
    T v;
    std::memcpy(&v, bytes.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
  template <class T>
  std::vector<T> get_all() {
    const auto n = static_cast<std::size_t>(get<std::int64_t>());
    std::vector<T> v(n);
    std::memcpy(v.data(), bytes.data() + at, n * sizeof(T));
    at += n * sizeof(T);
    return v;
  }
};

std::optional<Error> send_bytes(Comm& c, const std::vector<std::uint8_t>& b, int to, int tag) {
  return c.send(b.data(), b.size(), to, tag);
}

Expected<std::vector<std::uint8_t>> recv_bytes(Comm& c, int from, int tag) {
  const auto size = c.probe(from, tag, true);
  std::vector<std::uint8_t> b(size.value_or(0));
  if (auto e = c.recv(b.data(), b.size(), from, tag)) return *e;
  return b;
}

// A step on the wire; id < 0 is the signal to stop.
std::vector<std::uint8_t> encode(const Step& s) {
  Writer w;
  w.put<std::int64_t>(s.id);
  w.put<std::int64_t>(static_cast<std::int64_t>(s.seqs.size()));
  for (const auto& q : s.seqs) {
    w.put(q.id);
    w.put(q.new_tokens);
    w.put(q.context);
    w.put<std::int64_t>(q.samples);
    w.put_all(q.blocks);
    w.put_all(q.tokens);
  }
  return w.bytes;
}

Step decode(const std::vector<std::uint8_t>& bytes) {
  Reader r{bytes};
  Step s;
  s.id = r.get<std::int64_t>();
  if (s.id < 0) return s;
  s.seqs.resize(static_cast<std::size_t>(r.get<std::int64_t>()));
  for (auto& q : s.seqs) {
    q.id = r.get<std::int64_t>();
    q.new_tokens = r.get<std::int64_t>();
    q.context = r.get<std::int64_t>();
    q.samples = r.get<std::int64_t>() != 0;
    q.blocks = r.get_all<std::int32_t>();
    q.tokens = r.get_all<std::int64_t>();
  }
  return s;
}

std::int64_t peak_rss_bytes() { return process_status_bytes("VmHWM:"); }

// A request's prompt, without a tokenizer: token j of request r, a fixed function of both.
std::int64_t prompt_token(std::int64_t request, std::int64_t j, std::int64_t vocab) {
  std::uint64_t z = static_cast<std::uint64_t>(request) * 0x9E3779B97F4A7C15ull +
                    static_cast<std::uint64_t>(j) + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return static_cast<std::int64_t>((z ^ (z >> 31)) % static_cast<std::uint64_t>(vocab));
}

// ---- One rank's run.

class Run {
 public:
  Run(const Plan& plan, Comm& comm, Backend& b, const RunOptions& o)
      : plan_(plan), comm_(comm), b_(b), o_(o) {}

  Expected<std::optional<RunResult>> go();

 private:
  std::optional<Error> setup();
  std::optional<Error> drive();    // a replica's driver
  std::optional<Error> work();     // every other rank
  std::optional<Error> process(const Step& step, const StageOut* in, StageOut& out);
  std::optional<Error> report(RunResult* result);
  RunResult snapshot(const sim::Scheduler& sched, double now) const;

  int rank_at(int pp, int tp) const { return rank_of({at_.dp, pp, tp}, split_); }

  const Plan& plan_;
  Comm& comm_;
  Backend& b_;
  RunOptions o_;
  bool replay_ = false;
  bool handoff_ = false;  // stage hand-offs stay in the backend's memory (a GPU's, over NCCL)
  StageOut standin_;  // --replay-rank past the first stage: the previous stage's output
  sim::ParallelConfig split_;
  Place at_;
  model::Model loaded_;
  sim::ResolvedOptions opts_{};
  std::int64_t gpu_blocks_ = 0;
  std::unique_ptr<Decoder> decoder_;
  RankReport rep_;
  double start_ = 0;
  double hook_s_ = 0;  // the driver's time taking in finished batches inside its own stage
  // The driver's records, for the report.
  std::vector<sim::Seq> seqs_;
  std::vector<double> itl_ms_, step_ms_, decode_step_ms_;
  std::vector<StepSample> step_log_;
  std::vector<StageSample> stage_log_;  // this rank's steps
  std::int64_t preemptions_ = 0, steps_ = 0, max_in_flight_ = 0;
  std::vector<SampleRecord> samples_;
  std::vector<std::int64_t> request_of_;  // the scheduler's sequence -> the request's id
};

std::optional<Error> Run::setup() {
  split_ = o_.single_rank ? sim::ParallelConfig{} : plan_.split;
  if (o_.single_rank) split_.pp_layer_partition.clear();
  split_.expert_parallel = o_.single_rank ? false : plan_.split.expert_parallel;
  replay_ = o_.replay_rank >= 0;
  at_ = o_.single_rank ? Place{} : place_of(replay_ ? o_.replay_rank : comm_.rank(), split_);
  rep_.rank = replay_ ? o_.replay_rank : comm_.rank();
  rep_.at = at_;
  auto opts = sim::resolve_options(plan_.model, plan_.cluster.gpu, plan_.serving);
  if (!opts) return opts.error();
  opts_ = *opts;
  loaded_ = sim::as_loaded(plan_.model, plan_.serving);
  // The KV pool: the plan's blocks (the engine takes the minimum over ranks, as vLLM does).
  const sim::MemoryPlan mem = sim::simulate_memory(loaded_, plan_.cluster.gpu, split_, opts_);
  if (!mem.fits)
    return make_error(plan_.file, 0, 0, "the plan does not fit its own cluster profile: " + mem.why_not);
  gpu_blocks_ = mem.gpu_blocks;
  if (o_.single_rank && plan_.split.gpus() > 1)  // the reference holds the sharded run's pool
    gpu_blocks_ = std::min(gpu_blocks_, plan_.predicted["memory"].value("gpu_blocks", gpu_blocks_));
  // Refuse what this host cannot hold, before allocating it: the weights and a KV pool that
  // fills up, both in float32 here (the plan's figures are in its own dtypes).
  const sim::StageMemory& stage = mem.stages[static_cast<std::size_t>(at_.pp)];
  const double kv_fp32 = 4.0 / std::max(0.5, opts_.kv_bytes_per_element);
  const auto want = static_cast<std::uint64_t>(
      static_cast<double>(gpu_blocks_ * opts_.block_size * stage.kv_bytes_per_token) * kv_fp32 +
      static_cast<double>(stage.weights_bytes) * 4 / std::max(1.0, model::dtype_bytes(loaded_.dtype)));
  auto refuse = [&](std::uint64_t free) {
    return make_error(plan_.file, 0, 0,
                      "rank " + std::to_string(comm_.rank()) + " would hold " +
                          std::to_string(want >> 20) + " MiB (weights and a full KV pool of " +
                          std::to_string(gpu_blocks_) + " blocks), more than the " +
                          std::to_string(free >> 20) +
                          " MiB this host has free: plan against a smaller memory profile");
  };
  // On the CPU the weights and pool are float32 in host memory; a GPU backend holds them in
  // the device's memory and refuses there (its one allocation for each fails with CUDA's
  // message).
  const std::optional<std::uint64_t> free =
      b_.name() == "cpu" ? available_memory_bytes() : std::nullopt;
  if (free && want > *free) return refuse(*free);
  try {
    decoder_ = std::make_unique<Decoder>(loaded_, split_, at_, b_, gpu_blocks_, opts_.block_size,
                                         opts_.max_num_batched_tokens);
  } catch (const std::bad_alloc&) {
    return refuse(free.value_or(0));
  }
  const double t0 = comm_.now();
  if (o_.model_dir.empty()) {
    rep_.weight_bytes = decoder_->load_seeded();
  } else {
    auto st = o_.load_format == "sharded_state"
                  ? load_sharded(*decoder_, o_.model_dir, checkpoint_rank(at_, split_))
                  : load_hf(*decoder_, o_.model_dir);
    if (!st) return st.error();
    rep_.load_bytes = st->bytes_read;
    rep_.weight_bytes = decoder_->weight_bytes();
  }
  rep_.load_s = comm_.now() - t0;
  if (!o_.save_sharded.empty() && at_.dp == 0 && !o_.single_rank) {
    auto st = save_sharded(*decoder_, o_.save_sharded, checkpoint_rank(at_, split_));
    if (!st) return st.error();
  }
  handoff_ = b_.name() != "cpu" && !replay_ && split_.pp > 1;
  decoder_->set_device_handoff(handoff_);
  rep_.kv_pool_bytes = decoder_->kv_pool_bytes();
  rep_.kv_blocks = gpu_blocks_;
  return std::nullopt;  // go() brings the ranks together
}

// Computes this rank's stage of `step`, timing its compute, its collectives and its send.
std::optional<Error> Run::process(const Step& step, const StageOut* in, StageOut& out) {
  const double t0 = comm_.now(), tp0 = comm_.times.tp, pp0 = comm_.times.pp, hook0 = hook_s_;
  if (auto e = decoder_->forward(step, in, out, o_.keep_logits)) return e;
  if (!decoder_->last_stage() && !replay_ && handoff_) {  // on the device, over NCCL
    b_.sync();  // the stage's compute is done; the sends are ordered after it
    const auto n = static_cast<std::size_t>(step.rows() * decoder_->hidden_size()) * sizeof(float);
    const int next = rank_at(at_.pp + 1, at_.tp);
    if (auto e = comm_.send(decoder_->hidden_buffer(step.rows()), n, next, kHidden)) return e;
    if (auto e = comm_.send(decoder_->residual_buffer(step.rows()), n, next, kHidden)) return e;
  } else if (!decoder_->last_stage() && !replay_) {
    std::vector<float> msg(out.hidden);
    msg.insert(msg.end(), out.residual.begin(), out.residual.end());
    if (auto e = comm_.send(msg.data(), msg.size() * sizeof(float), rank_at(at_.pp + 1, at_.tp),
                            kHidden))
      return e;
  }
  const double tp = comm_.times.tp - tp0, pp = comm_.times.pp - pp0;
  rep_.tp_comm_s += tp;
  rep_.pp_comm_s += pp;
  const double compute = comm_.now() - t0 - tp - pp - (hook_s_ - hook0);
  rep_.compute_s += compute;
  ++rep_.steps;
  stage_log_.push_back({step.id, at_.dp, at_.pp, at_.tp, t0 - start_, compute, tp, pp});
  return std::nullopt;
}

std::optional<Error> Run::work() {
  const int driver = rank_at(0, 0);
  for (;;) {
    auto bytes = recv_bytes(comm_, driver, kStep);
    if (!bytes) return bytes.error();
    const Step step = decode(*bytes);
    if (step.id < 0) return std::nullopt;
    StageOut in, out;
    if (!decoder_->first_stage() && handoff_) {  // received into the decoder's own buffers
      const int from = rank_at(at_.pp - 1, at_.tp);
      const auto n = static_cast<std::size_t>(step.rows() * decoder_->hidden_size()) * sizeof(float);
      if (auto e = comm_.recv(decoder_->hidden_buffer(step.rows()), n, from, kHidden)) return e;
      if (auto e = comm_.recv(decoder_->residual_buffer(step.rows()), n, from, kHidden)) return e;
      b_.sync();  // waiting for the previous stage is idle time, not this stage's compute
    } else if (!decoder_->first_stage()) {
      const int from = rank_at(at_.pp - 1, at_.tp);
      const std::size_t n = static_cast<std::size_t>(step.rows() * decoder_->hidden_size());
      std::vector<float> msg(2 * n);
      if (auto e = comm_.recv(msg.data(), msg.size() * sizeof(float), from, kHidden)) return e;
      in.hidden.assign(msg.begin(), msg.begin() + static_cast<std::ptrdiff_t>(n));
      in.residual.assign(msg.begin() + static_cast<std::ptrdiff_t>(n), msg.end());
    }
    if (auto e = process(step, decoder_->first_stage() || handoff_ ? nullptr : &in, out)) return e;
    if (decoder_->last_stage() && at_.tp == 0) {
      Writer w;
      w.put<std::int64_t>(step.id);
      w.put_all(out.tokens);
      if (auto e = send_bytes(comm_, w.bytes, driver, kTokens)) return e;
      if (o_.keep_logits) {  // kept here, sent at the end
        std::size_t k = 0;
        const auto V = static_cast<std::size_t>(loaded_.vocab_size);
        for (const auto& s : step.seqs)
          if (s.samples) {
            samples_.push_back({s.id, 0, out.tokens[k], comm_.rank(),
                                std::vector<float>(out.logits.begin() + static_cast<std::ptrdiff_t>(k * V),
                                                   out.logits.begin() + static_cast<std::ptrdiff_t>((k + 1) * V))});
            ++k;
          }
      }
    }
  }
}

std::optional<Error> Run::drive() {
  // This replica's requests: k mod dp == its index, as the simulation splits them.
  const sim::Workload w = first_requests(plan_.workload, o_.requests);
  const int dp = static_cast<int>(split_.dp);
  std::vector<sim::Request> mine;
  for (std::size_t k = static_cast<std::size_t>(at_.dp); k < w.requests.size();
       k += static_cast<std::size_t>(dp))
    mine.push_back(w.requests[k]);
  const bool closed = w.arrival == sim::ArrivalProcess::kClosedLoop;
  std::int64_t releasable = closed ? (w.concurrency + dp - 1) / dp : 0;
  sim::SchedulerConfig sc{opts_.max_num_seqs, opts_.max_num_batched_tokens, opts_.block_size,
                          gpu_blocks_, opts_.max_model_len};
  // The plan's engine's admission (vLLM's, TensorRT-LLM's guaranteed-no-evict, SGLang's).
  sc.reserve_whole_request = opts_.reserve_whole_request;
  sc.chunked_prefill = opts_.chunked_prefill;
  sc.sglang = opts_.framework == sim::Framework::kSglang;
  sc.max_prefill_tokens = opts_.max_prefill_tokens;
  sim::Scheduler sched(sc);
  // Block ids for the scheduler's block counts: a free list, and each sequence's table.
  std::vector<std::int32_t> free_ids;
  for (std::int64_t k = gpu_blocks_ - 1; k >= 0; --k) free_ids.push_back(static_cast<std::int32_t>(k));
  std::vector<std::vector<std::int32_t>> tables;
  std::vector<std::vector<std::int64_t>> tokens;  // prompt, then sampled tokens
  auto sync_blocks = [&] {
    const auto& seqs = sched.seqs();
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      auto& t = tables[i];
      while (static_cast<std::int64_t>(t.size()) > seqs[i].blocks) {
        free_ids.push_back(t.back());
        t.pop_back();
      }
      while (static_cast<std::int64_t>(t.size()) < seqs[i].blocks) {
        t.push_back(free_ids.back());
        free_ids.pop_back();
      }
    }
  };
  std::vector<int> replica_ranks;
  for (int pp = 0; pp < split_.pp && !replay_; ++pp)
    for (int tp = 0; tp < split_.tp; ++tp)
      if (pp != 0 || tp != 0) replica_ranks.push_back(rank_at(pp, tp));
  if (replay_ && !decoder_->first_stage()) {  // fixed hidden states for the largest step
    const auto n = static_cast<std::size_t>(opts_.max_num_batched_tokens * decoder_->hidden_size());
    standin_.hidden.resize(n);
    standin_.residual.resize(n);
    const std::uint64_t h = name_hash("replay.hidden"), r = name_hash("replay.residual");
    for (std::size_t k = 0; k < n; ++k) {  // uniform in +-sqrt(3): unit variance
      standin_.hidden[k] = seeded_value(h, k, 1.7320508f);
      standin_.residual[k] = seeded_value(r, k, 1.7320508f);
    }
  }
  struct InFlight {
    sim::Batch batch;
    Step step;
    double launched;
  };
  std::deque<InFlight> in_flight;
  const double t0 = comm_.now();
  auto clock = [&] { return comm_.now() - t0; };
  std::size_t next = 0;
  std::int64_t step_id = 0;
  double last_progress = 0;

  auto complete = [&](InFlight& f, const std::vector<std::int64_t>& sampled) {
    const double now = clock();
    std::size_t k = 0;
    for (const auto& s : f.step.seqs)
      if (s.samples) tokens[static_cast<std::size_t>(s.id)].push_back(sampled[k++]);
    const std::int64_t done = sched.complete(f.batch, now, &itl_ms_);
    if (closed) releasable += done;
    step_ms_.push_back((now - f.launched) * 1e3);
    step_log_.push_back({f.step.id, at_.dp, f.batch.shape, f.launched + t0 - start_, (now - f.launched) * 1e3});
    if (f.batch.shape.prefill_tokens == 0) decode_step_ms_.push_back((now - f.launched) * 1e3);
    sync_blocks();
    if (o_.progress && comm_.rank() == 0 && now - last_progress >= o_.progress_every_s) {
      last_progress = now;
      o_.progress(snapshot(sched, now));
    }
  };

  // With pp > 1 the driver computes the first stage too: it takes in batches the last stage
  // has finished between its operators, so that their tokens count from when they came back.
  const int last_rank = rank_at(static_cast<int>(split_.pp) - 1, 0);
  if (split_.pp > 1 && !replay_)
    decoder_->set_hook([&]() -> std::optional<Error> {
      const double h0 = comm_.now();
      while (in_flight.size() > 1 && comm_.probe(last_rank, kTokens, false)) {  // never the newest
        auto bytes = recv_bytes(comm_, last_rank, kTokens);
        if (!bytes) return bytes.error();
        Reader r{*bytes};
        r.get<std::int64_t>();
        complete(in_flight.front(), r.get_all<std::int64_t>());
        in_flight.pop_front();
      }
      hook_s_ += comm_.now() - h0;
      return std::nullopt;
    });
  for (;;) {
    const double now = clock();
    while (next < mine.size() && (closed ? releasable > 0 : mine[next].arrival_s <= now)) {
      sched.add(mine[next], closed ? now : mine[next].arrival_s);
      const auto& s = sched.seqs().back();
      tables.emplace_back();
      request_of_.push_back(mine[next].id);
      std::vector<std::int64_t> prompt;
      for (std::int64_t j = 0; j < s.req.input_tokens; ++j)
        prompt.push_back(prompt_token(mine[next].id, j, loaded_.vocab_size));
      tokens.push_back(std::move(prompt));
      if (closed) releasable -= s.rejected ? 0 : 1;
      ++next;
    }
    if (static_cast<std::int64_t>(in_flight.size()) < split_.pp && sched.has_work()) {
      sim::Batch b = sched.schedule();
      if (!b.empty()) {
        sync_blocks();
        Step step;
        step.id = step_id++;
        for (const auto& item : b.items) {
          const sim::Seq& s = sched.seqs()[static_cast<std::size_t>(item.seq)];
          StepSeq q;
          q.id = item.seq;
          q.new_tokens = item.new_tokens;
          q.context = item.context;
          const auto need = (item.context + item.new_tokens + opts_.block_size - 1) / opts_.block_size;
          const auto& table = tables[static_cast<std::size_t>(item.seq)];
          q.blocks.assign(table.begin(), table.begin() + need);
          const auto& toks = tokens[static_cast<std::size_t>(item.seq)];
          q.tokens.assign(toks.begin() + item.context, toks.begin() + item.context + item.new_tokens);
          q.samples = item.context + item.new_tokens == s.req.input_tokens + s.generated;
          step.seqs.push_back(std::move(q));
        }
        const auto wire = encode(step);
        for (int r : replica_ranks)
          if (auto e = send_bytes(comm_, wire, r, kStep)) return e;
        in_flight.push_back({std::move(b), step, now});
        max_in_flight_ = std::max<std::int64_t>(max_in_flight_, static_cast<std::int64_t>(in_flight.size()));
        ++steps_;
        StageOut out;
        if (auto e = process(in_flight.back().step,
                             decoder_->first_stage() ? nullptr : &standin_, out))
          return e;
        if (replay_ && !decoder_->last_stage()) {  // the later stages stood in for: token 0
          std::size_t sampling = 0;
          for (const auto& s : in_flight.back().step.seqs) sampling += s.samples ? 1 : 0;
          out.tokens.assign(sampling, 0);
        }
        if (decoder_->last_stage() || replay_) {  // pp = 1 (or a replay): the driver samples
          if (o_.keep_logits) {
            std::size_t k = 0;
            const auto V = static_cast<std::size_t>(loaded_.vocab_size);
            for (const auto& s : in_flight.back().step.seqs)
              if (s.samples) {
                samples_.push_back({s.id, 0, out.tokens[k], comm_.rank(),
                                    std::vector<float>(out.logits.begin() + static_cast<std::ptrdiff_t>(k * V),
                                                       out.logits.begin() + static_cast<std::ptrdiff_t>((k + 1) * V))});
                ++k;
              }
          }
          complete(in_flight.front(), out.tokens);
          in_flight.pop_front();
        }
        continue;
      }
    }
    if (!in_flight.empty()) {  // wait for the oldest batch's tokens from the last stage
      const bool can_launch = static_cast<std::int64_t>(in_flight.size()) < split_.pp && sched.has_work();
      if (can_launch && !comm_.probe(rank_at(static_cast<int>(split_.pp) - 1, 0), kTokens, false))
        continue;
      auto bytes = recv_bytes(comm_, rank_at(static_cast<int>(split_.pp) - 1, 0), kTokens);
      if (!bytes) return bytes.error();
      Reader r{*bytes};
      r.get<std::int64_t>();
      complete(in_flight.front(), r.get_all<std::int64_t>());
      in_flight.pop_front();
      continue;
    }
    if (next >= mine.size() && !sched.has_work()) break;
    if (!closed && next < mine.size()) {  // idle until the next arrival
      const double wait = mine[next].arrival_s - clock();
      if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(std::min(wait, 0.05)));
    }
  }
  decoder_->set_hook(nullptr);
  Step stop;
  stop.id = -1;
  for (int r : replica_ranks)
    if (auto e = send_bytes(comm_, encode(stop), r, kStep)) return e;
  seqs_ = sched.seqs();
  for (auto& s : seqs_) s.req.id = request_of_[static_cast<std::size_t>(&s - seqs_.data())];
  preemptions_ = sched.preemptions();
  return std::nullopt;
}

// What rank 0 knows during the run: its replica's requests so far and its own figures.
RunResult Run::snapshot(const sim::Scheduler& sched, double now) const {
  RunResult r;
  r.complete = false;
  r.wall_s = now;
  RankReport me = rep_;
  me.peak_rss_bytes = peak_rss_bytes();
  r.ranks.push_back(me);
  std::vector<sim::Seq> seqs = sched.seqs();  // (no timeline: a snapshot must be cheap)
  for (std::size_t k = 0; k < seqs.size(); ++k) seqs[k].req.id = request_of_[k];
  std::vector<const std::vector<sim::Seq>*> ptrs{&seqs};
  std::vector<double> itl = itl_ms_;
  const sim::Workload w = first_requests(plan_.workload, o_.requests);
  sim::summarize_requests(ptrs, itl, split_.tp * split_.pp, plan_.slo,
                          w.arrival == sim::ArrivalProcess::kClosedLoop, r.measured);
  r.measured.steps = static_cast<std::int64_t>(step_log_.size());
  std::vector<double> step = step_ms_, decode = decode_step_ms_;
  r.measured.step_ms = sim::percentiles(step);
  r.measured.decode_step_ms = sim::percentiles(decode);
  return r;
}

std::optional<Error> Run::report(RunResult* result) {
  rep_.peak_rss_bytes = peak_rss_bytes();
  const bool driver = at_.pp == 0 && at_.tp == 0;
  const bool sampler = at_.pp + 1 == split_.pp && at_.tp == 0;
  if (comm_.rank() != 0) {
    Writer w;
    w.put(rep_);
    if (auto e = send_bytes(comm_, w.bytes, 0, kReport)) return e;
    if (driver) {
      Writer s;
      s.put<std::int64_t>(static_cast<std::int64_t>(seqs_.size()));
      for (const auto& q : seqs_) s.put(q);
      s.put_all(itl_ms_);
      s.put_all(step_ms_);
      s.put_all(decode_step_ms_);
      s.put(preemptions_);
      s.put(steps_);
      s.put(max_in_flight_);
      s.put_all(request_of_);
      s.put_all(step_log_);
      if (auto e = send_bytes(comm_, s.bytes, 0, kSeqs)) return e;
    }
    {
      Writer s;
      s.put_all(stage_log_);
      if (auto e = send_bytes(comm_, s.bytes, 0, kStageLog)) return e;
    }
    if (sampler && o_.keep_logits) {
      Writer s;
      s.put<std::int64_t>(static_cast<std::int64_t>(samples_.size()));
      for (const auto& q : samples_) {
        s.put(q.request);
        s.put(q.token);
        s.put(q.rank);
        s.put_all(q.logits);
      }
      if (auto e = send_bytes(comm_, s.bytes, 0, kSamples)) return e;
    }
    return std::nullopt;
  }
  RunResult& res = *result;
  res.ranks.push_back(rep_);
  for (int r = 1; r < comm_.size(); ++r) {
    auto bytes = recv_bytes(comm_, r, kReport);
    if (!bytes) return bytes.error();
    Reader rd{*bytes};
    res.ranks.push_back(rd.get<RankReport>());
  }
  // Every replica's sequences, with their requests' ids.
  std::vector<std::vector<sim::Seq>> replicas{seqs_};
  std::vector<std::vector<std::int64_t>> request_ids{request_of_};
  std::int64_t preempt = preemptions_, steps = steps_, in_flight = max_in_flight_;
  std::vector<double> itl = itl_ms_, step_ms = step_ms_, decode_ms = decode_step_ms_;
  res.steps = step_log_;
  const int n_replicas = replay_ ? 1 : static_cast<int>(split_.dp);
  for (int d = 1; d < n_replicas; ++d) {
    auto bytes = recv_bytes(comm_, rank_of({d, 0, 0}, split_), kSeqs);
    if (!bytes) return bytes.error();
    Reader rd{*bytes};
    std::vector<sim::Seq> seqs(static_cast<std::size_t>(rd.get<std::int64_t>()));
    for (auto& q : seqs) q = rd.get<sim::Seq>();
    auto a = rd.get_all<double>(), b = rd.get_all<double>(), c = rd.get_all<double>();
    itl.insert(itl.end(), a.begin(), a.end());
    step_ms.insert(step_ms.end(), b.begin(), b.end());
    decode_ms.insert(decode_ms.end(), c.begin(), c.end());
    preempt += rd.get<std::int64_t>();
    steps += rd.get<std::int64_t>();
    in_flight = std::max(in_flight, rd.get<std::int64_t>());
    request_ids.push_back(rd.get_all<std::int64_t>());
    auto log = rd.get_all<StepSample>();
    res.steps.insert(res.steps.end(), log.begin(), log.end());
    replicas.push_back(std::move(seqs));
  }
  // Each rank sends in the order report, sequences, stage log, samples: received in that order.
  res.stage_steps = stage_log_;
  for (int r = 1; r < comm_.size(); ++r) {
    auto bytes = recv_bytes(comm_, r, kStageLog);
    if (!bytes) return bytes.error();
    Reader rd{*bytes};
    auto log = rd.get_all<StageSample>();
    res.stage_steps.insert(res.stage_steps.end(), log.begin(), log.end());
  }
  std::vector<const std::vector<sim::Seq>*> ptrs;
  for (const auto& r : replicas) ptrs.push_back(&r);
  sim::ServingResult& m = res.measured;
  const sim::Workload w = first_requests(plan_.workload, o_.requests);
  sim::summarize_requests(ptrs, itl, split_.gpus(), plan_.slo,
                          w.arrival == sim::ArrivalProcess::kClosedLoop, m);
  m.preemptions = preempt;
  m.steps = steps;
  m.max_batches_in_flight = in_flight;
  m.step_ms = sim::percentiles(step_ms);
  m.decode_step_ms = sim::percentiles(decode_ms);
  // Each stage's time, step by step: the TP rank that computed longest sets the step (the
  // others wait for it inside the first collective), so its compute and its collectives are
  // the stage's, and the other ranks' extra collective time is skew, not transfer. Then the
  // mean over replicas.
  std::vector<std::vector<sim::StageTime>> per_replica(
      static_cast<std::size_t>(n_replicas), std::vector<sim::StageTime>(static_cast<std::size_t>(split_.pp)));
  std::map<std::tuple<int, int, std::int64_t>, const StageSample*> slowest;
  for (const auto& s : res.stage_steps) {
    auto& at = slowest[{s.dp, s.pp, s.step}];
    if (!at || s.compute_s > at->compute_s) at = &s;
  }
  for (const auto& [key, s] : slowest) {
    auto& st = per_replica[static_cast<std::size_t>(replay_ ? 0 : s->dp)][static_cast<std::size_t>(s->pp)];
    st.compute += s->compute_s;
    st.tp_comm += s->tp_comm_s;
    st.pp_comm += s->pp_comm_s;
  }
  m.breakdown = sim::average_breakdown(per_replica, m.makespan_s);
  // Samples in (request, index) order, from every replica's last stage.
  if (o_.keep_logits) {
    auto add = [&](std::vector<SampleRecord> recs, const std::vector<std::int64_t>& ids) {
      std::vector<std::int64_t> count(ids.size(), 0);
      for (auto& s : recs) {
        const auto seq = static_cast<std::size_t>(s.request);
        s.index = count[seq]++;
        s.request = ids[seq];
        res.samples.push_back(std::move(s));
      }
    };
    if (split_.pp == 1 && split_.tp >= 1) add(samples_, request_ids[0]);
    for (int d = 0; d < n_replicas; ++d) {
      const int from = rank_of({d, static_cast<int>(split_.pp) - 1, 0}, split_);
      if (from == 0 || replay_) continue;
      auto bytes = recv_bytes(comm_, from, kSamples);
      if (!bytes) return bytes.error();
      Reader rd{*bytes};
      std::vector<SampleRecord> recs(static_cast<std::size_t>(rd.get<std::int64_t>()));
      for (auto& q : recs) {
        q.request = rd.get<std::int64_t>();
        q.token = rd.get<std::int64_t>();
        q.rank = rd.get<int>();
        q.logits = rd.get_all<float>();
      }
      add(std::move(recs), request_ids[static_cast<std::size_t>(d)]);
    }
    std::sort(res.samples.begin(), res.samples.end(), [](const auto& a, const auto& b) {
      return std::tie(a.request, a.index) < std::tie(b.request, b.index);
    });
  }
  return std::nullopt;
}

Expected<std::optional<RunResult>> Run::go() {
  // Setup fails on one rank or on several: all agree (a sum over the job of who failed), the
  // first failing rank reports, and every rank returns instead of waiting for the others.
  auto err = setup();
  std::vector<float> failed(static_cast<std::size_t>(comm_.size()), 0.0f);
  if (err) failed[static_cast<std::size_t>(comm_.rank())] = 1;
  if (auto e = comm_.all_reduce_sum(failed.data(), failed.size(), Group::kWorld)) return *e;
  for (std::size_t r = 0; r < failed.size(); ++r)
    if (failed[r] > 0) {
      if (o_.setup_failed) *o_.setup_failed = true;
      return static_cast<int>(r) == comm_.rank() ? *err : make_error("", 0, 0, kOtherRankFailed);
    }
  comm_.times = {};
  start_ = comm_.now();
  const bool driver = replay_ || (at_.pp == 0 && at_.tp == 0);
  if (auto e = driver ? drive() : work()) return *e;
  std::optional<RunResult> result;
  if (comm_.rank() == 0) result.emplace();
  if (auto e = report(result ? &*result : nullptr)) return *e;
  if (result) result->wall_s = comm_.now() - start_;
  return result;
}

}  // namespace

sim::Workload first_requests(const sim::Workload& w, std::int64_t n) {
  sim::Workload out = w;
  if (n >= 0 && n < static_cast<std::int64_t>(out.requests.size()))
    out.requests.resize(static_cast<std::size_t>(n));
  return out;
}

Expected<std::optional<RunResult>> run_plan(const Plan& plan, Comm& comm, Backend& backend,
                                            const RunOptions& o) {
  Run run(plan, comm, backend, o);
  return run.go();
}

}  // namespace tpp::exec
