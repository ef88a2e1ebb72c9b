#include "executor/profile.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <map>
#include <tuple>

#include <fmt/format.h>

#include "executor/decoder.h"
#include "hardware_profiles/hardware.h"
#include "model/tensors.h"
#include "simulator/memory.h"
#include "simulator/step_cost.h"

namespace tpp::exec {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The median over `trials` of the time one call of `f` takes, each trial `calls` calls.
template <class F>
double median_of_trials(F&& f, int calls, int trials) {
  std::vector<double> t;
  for (int k = 0; k < trials; ++k) {
    const double t0 = now_s();
    for (int c = 0; c < calls; ++c) f();
    t.push_back((now_s() - t0) / calls);
  }
  std::nth_element(t.begin(), t.begin() + trials / 2, t.end());
  return t[static_cast<std::size_t>(trials / 2)];
}

// The same, each trial running enough calls to last about 20 ms.
template <class F>
double median_call_s(F&& f, int trials = 5) {
  f();  // warm-up
  int calls = 1;
  for (;;) {
    const double t0 = now_s();
    for (int k = 0; k < calls; ++k) f();
    if (now_s() - t0 > 0.02 || calls > (1 << 20)) break;
    calls *= 2;
  }
  return median_of_trials(f, calls, trials);
}

// The same on every rank of a job: a fixed number of calls, fewer for larger messages, so that
// every rank makes the same collective calls.
template <class F>
double median_collective_s(F&& f, std::int64_t bytes, int trials = 5) {
  const int calls = static_cast<int>(std::clamp<std::int64_t>((std::int64_t{1} << 22) / (bytes + 4096), 4, 2000));
  f();
  return median_of_trials(f, calls, trials);
}

std::vector<float> filled(std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t k = 0; k < n; ++k) v[k] = static_cast<float>((k * 2654435761u) % 1000) * 1e-3f - 0.5f;
  return v;
}

struct Shape {
  std::int64_t n, k;
};

}  // namespace

void profile_compute(Backend& b, const model::Model* m, Profile& p) {
  std::vector<Shape> shapes;
  if (m) {
    std::int64_t dense = 0;
    while (dense < m->num_layers && m->is_moe_layer(dense)) ++dense;
    for (const auto& t : model::layer_tensors(*m, std::min(dense, m->num_layers - 1)))
      if (t.cols > 1 && t.count == 1) shapes.push_back({t.rows, t.cols});
    p.gemm_shapes = fmt::format("the {} GEMMs of a {} layer at tp=1", shapes.size(), m->name);
  } else {
    shapes = {{1024, 1024}};
    p.gemm_shapes = "[m x 1024] x [1024 x 1024]";
  }
  std::int64_t max_n = 0, max_k = 0;
  for (const auto& s : shapes) {
    max_n = std::max(max_n, s.n);
    max_k = std::max(max_k, s.k);
  }
  std::vector<std::vector<float>> weights;
  for (const auto& s : shapes) weights.push_back(filled(static_cast<std::size_t>(s.n * s.k)));
  for (std::int64_t mr : {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048}) {
    auto x = filled(static_cast<std::size_t>(mr * max_k));
    std::vector<float> y(static_cast<std::size_t>(mr * max_n));
    GemmPoint g;
    g.m = mr;
    g.seconds = median_call_s([&] {
      for (std::size_t k = 0; k < shapes.size(); ++k)
        b.gemm(x.data(), weights[k].data(), y.data(), mr, shapes[k].n, shapes[k].k);
    });
    for (const auto& s : shapes) g.flops += 2.0 * static_cast<double>(mr * s.n * s.k);
    g.flops_per_s = g.flops / g.seconds;
    p.peak_flops_per_s = std::max(p.peak_flops_per_s, g.flops_per_s);
    p.gemm.push_back(g);
  }
  {  // a large square GEMM: the peak may sit beyond the model's shapes
    const std::int64_t n = 1024;
    auto x = filled(static_cast<std::size_t>(n * n)), w = filled(static_cast<std::size_t>(n * n));
    std::vector<float> y(static_cast<std::size_t>(n * n));
    const double t = median_call_s([&] { b.gemm(x.data(), w.data(), y.data(), n, n, n); }, 3);
    p.peak_flops_per_s = std::max(p.peak_flops_per_s, 2.0 * n * n * n / t);
  }
  {  // memory: a 256 MiB copy (read and write); a weight-bound GEMM over 64 MiB of weights
    const std::size_t n = std::size_t{64} << 20;
    std::vector<float> a = filled(n), c(n);
    const double t = median_call_s([&] { std::memcpy(c.data(), a.data(), n * sizeof(float)); }, 3);
    p.copy_GBps = 2.0 * static_cast<double>(n * sizeof(float)) / t / 1e9;
    const std::int64_t side = 4096;
    auto x = filled(static_cast<std::size_t>(side));
    std::vector<float> y(static_cast<std::size_t>(side));
    const double tg = median_call_s([&] { b.gemm(x.data(), a.data(), y.data(), 1, side, side); }, 3);
    p.gemm_memory_fraction =
        std::min(1.0, static_cast<double>(side * side * sizeof(float)) / tg / 1e9 / p.copy_GBps);
  }
  {  // one operator call at the smallest sizes: what a step pays per kernel beyond its work
    const std::int64_t d = 16;
    auto x = filled(64), w = filled(64), y = filled(64), r = filled(64);
    std::vector<std::int64_t> pos = {3}, out(1);
    std::vector<std::int32_t> table = {0};
    std::vector<float> kp(static_cast<std::size_t>(16 * d)), vp(kp);
    StepMeta meta;
    meta.rows = 1;
    meta.tokens = {3};
    meta.positions = pos;
    meta.slots = {0};
    meta.seqs = {kernels::PagedSeq{0, 1, 0, table.data()}};
    meta.sample_rows = {0};
    meta.max_blocks = 1;
    meta.block_size = 16;
    b.begin_step(meta);
    Rope rope;
    rope.inv_freq.resize(static_cast<std::size_t>(d / 2));
    kernels::rope_inv_freq(1e4f, d, rope.inv_freq.data());
    const std::vector<std::function<void()>> ops = {
        [&] { b.gemm(x.data(), w.data(), y.data(), 1, 4, 4); },
        [&] { b.add_rmsnorm(x.data(), r.data(), w.data(), y.data(), 1, d, 1e-6f); },
        [&] { b.rope(y.data(), 1, 1, d, 0, d, rope); },
        [&] { b.silu_mul(x.data(), y.data(), 1, d); },
        [&] { b.kv_write(x.data(), w.data(), kp.data(), vp.data(), 1, d); },
        [&] { b.paged_attention(x.data(), kp.data(), vp.data(), 1, 1, d, 0.25f, y.data()); },
        [&] { b.argmax(x.data(), 1, d, out.data()); }};
    double total = 0;
    for (const auto& op : ops) total += median_call_s(op);
    p.launch_us = total / static_cast<double>(ops.size()) * 1e6;
  }
}

namespace {

// Times GEMMs and attention apart from the rest, passing every call on.
class SplitTimer : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  void gemm(const float* x, const float* w, float* y, std::int64_t m, std::int64_t n,
            std::int64_t k, bool acc) override {
    const double t0 = now_s();
    in_.gemm(x, w, y, m, n, k, acc);
    const double t = now_s() - t0;
    gemm_s += t;
    if (record) {
      auto& c = calls[{n, k, m}];
      c.first += t;
      c.second += 1;
    }
  }
  void paged_attention(const float* q, const float* kp, const float* vp, std::int64_t qh,
                       std::int64_t kh, std::int64_t d, float sc, float* o) override {
    const double t0 = now_s();
    in_.paged_attention(q, kp, vp, qh, kh, d, sc, o);
    attention_s += now_s() - t0;
  }
  void mla_attention(const float* ql, const float* qp, const float* pool, std::int64_t h,
                     std::int64_t l, std::int64_t r, float sc, float* o) override {
    const double t0 = now_s();
    in_.mla_attention(ql, qp, pool, h, l, r, sc, o);
    attention_s += now_s() - t0;
  }
  double gemm_s = 0, attention_s = 0;
  bool record = false;
  // (n, k, rows) -> (seconds, calls), in one forward
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::pair<double, int>> calls;
};

// A cluster of this machine's base figures with every efficiency 1: the step model's operator
// times at full rate, against which the measured ones give the efficiencies.
hw::Cluster neutral_cluster(const Profile& p) {
  hw::Cluster c;
  c.name = "profile";
  c.nodes = 1;
  c.gpus_per_node = 1;
  c.gpu.name = "profile";
  c.gpu.memory_marketed_GB.value = 1e4;
  c.gpu.memory_driver_GiB.value = 1e4;
  c.gpu.hbm_bandwidth_GBps.value = p.copy_GBps;
  c.gpu.bf16_dense_tflops.value = c.gpu.fp16_dense_tflops.value = p.peak_flops_per_s / 1e12;
  c.gpu.sm_count.value = 1;
  c.gpu.compute_capability.value = 8.0;
  c.intra_node.bandwidth_GBps.value = 1;
  hw::MeasuredEfficiency e;
  e.memory = 1;
  e.gemm_memory = 1;
  e.tile_rows = 1;
  e.launch_us = 1e-9;
  e.launch_graph_us = 1e-9;
  e.elementwise = 1;
  e.gemm = {{1, 1.0}, {1e9, 1.0}};
  c.efficiency = e;
  return c;
}

// The decode batches both forward measurements run: a cache of `max_seqs` sequences of
// `context` tokens (one prefill step), then decode steps of n of them.
struct DecodeSet {
  Step fill;
  std::int64_t context = 128, bs = 16, max_seqs = 64;
  std::int64_t blocks() const { return max_seqs * (context / bs + 2) + 2048 / bs + 2; }
  explicit DecodeSet(const model::Model& m) {
    for (std::int64_t s = 0; s < max_seqs; ++s) {
      StepSeq q;
      q.id = s;
      q.new_tokens = context;
      for (std::int64_t k = 0; k < context / bs + 1; ++k)
        q.blocks.push_back(static_cast<std::int32_t>(s * (context / bs + 2) + k));
      for (std::int64_t j = 0; j < context; ++j) q.tokens.push_back((s * 131 + j) % m.vocab_size);
      q.samples = true;
      fill.seqs.push_back(q);
    }
  }
  Step decode(std::int64_t n) const {
    Step step;
    for (std::int64_t s = 0; s < n; ++s) {
      StepSeq q = fill.seqs[static_cast<std::size_t>(s)];
      q.new_tokens = 1;
      q.context = context;
      q.tokens = {7};
      step.seqs.push_back(q);
    }
    return step;
  }
};

model::Model as_float32(const model::Model& m0) {
  model::Model m = m0;
  m.dtype = model::DType::kF32;  // the CPU computes in float32
  if (m.quant.method == model::QuantMethod::kNone) m.quant.weight_dtype = m.dtype;
  return m;
}

// Passes every call on, recording each collective's size and time.
class RecordingComm : public Comm {
 public:
  explicit RecordingComm(Comm& in) : in_(in) {}
  int rank() const override { return in_.rank(); }
  int size() const override { return in_.size(); }
  int group_size(Group g) const override { return in_.group_size(g); }
  std::optional<Error> all_reduce_sum(float* d, std::size_t n, Group g) override {
    return timed(n * sizeof(float), [&] { return in_.all_reduce_sum(d, n, g); });
  }
  std::optional<Error> all_gather(const float* in, std::size_t n, float* out, Group g) override {
    return timed(n * sizeof(float) * static_cast<std::size_t>(group_size(g)),
                 [&] { return in_.all_gather(in, n, out, g); });
  }
  std::optional<Error> all_gather_v(const float* in, std::size_t n, float* out,
                                    const std::vector<std::size_t>& counts, Group g) override {
    std::size_t total = 0;
    for (auto c : counts) total += c;
    return timed(total * sizeof(float), [&] { return in_.all_gather_v(in, n, out, counts, g); });
  }
  std::optional<Error> all_gather_sizes(std::size_t n, std::vector<std::size_t>& c, Group g) override {
    return in_.all_gather_sizes(n, c, g);
  }
  std::optional<Error> send(const void* d, std::size_t b, int to, int tag) override { return in_.send(d, b, to, tag); }
  std::optional<Error> recv(void* d, std::size_t b, int from, int tag) override { return in_.recv(d, b, from, tag); }
  std::optional<std::size_t> probe(int from, int tag, bool block) override { return in_.probe(from, tag, block); }
  std::optional<Error> barrier() override { return in_.barrier(); }
  [[noreturn]] void abort(int code) override {
    in_.abort(code);
    std::_Exit(code);
  }
  double now() const override { return in_.now(); }
  std::vector<std::pair<std::size_t, double>> calls;  // (bytes, seconds)

 private:
  template <class F>
  std::optional<Error> timed(std::size_t bytes, F&& f) {
    const double t0 = now_s();
    auto e = f();
    calls.emplace_back(bytes, now_s() - t0);
    return e;
  }
  Comm& in_;
};

// The tight-loop time of an all-reduce of `bytes`, log-log between the measured sizes.
double tight_s(const std::vector<CollectivePoint>& pts, double bytes) {
  if (pts.empty()) return 0;
  if (bytes <= static_cast<double>(pts.front().bytes)) return pts.front().time_us * 1e-6;
  for (std::size_t k = 1; k < pts.size(); ++k)
    if (bytes <= static_cast<double>(pts[k].bytes)) {
      const double x0 = std::log(static_cast<double>(pts[k - 1].bytes)),
                   x1 = std::log(static_cast<double>(pts[k].bytes));
      const double y0 = std::log(pts[k - 1].time_us), y1 = std::log(pts[k].time_us);
      return std::exp(y0 + (y1 - y0) * (std::log(bytes) - x0) / (x1 - x0)) * 1e-6;
    }
  return pts.back().time_us * 1e-6 * bytes / static_cast<double>(pts.back().bytes);
}

}  // namespace

std::optional<Error> profile_collective_wait(Comm& comm, const model::Model& m0, Profile& p) {
  const int n = comm.group_size(Group::kTp);
  if (n < 2) return std::nullopt;
  const model::Model m = as_float32(m0);
  sim::ParallelConfig split;
  split.tp = n;
  Place at;
  at.tp = comm.rank();
  RecordingComm rec(comm);
  auto backend = make_cpu_backend(rec);
  const DecodeSet set(m);
  Decoder dec(m, split, at, *backend, set.blocks(), set.bs);
  dec.load_seeded();
  StageOut out;
  if (auto e = dec.forward(set.fill, nullptr, out, false)) return e;
  std::vector<double> excess;  // per forward: the mean excess of its collectives
  for (std::int64_t seqs : {1, 2, 4, 8, 16, 32, 64}) {
    const Step step = set.decode(seqs);
    for (int k = 0; k < 9; ++k) {
      rec.calls.clear();
      if (auto e = dec.forward(step, nullptr, out, false)) return e;
      if (k == 0 || rec.calls.empty()) continue;  // warm-up
      double sum = 0;
      for (const auto& [bytes, s] : rec.calls) sum += s - tight_s(p.all_reduce, static_cast<double>(bytes));
      excess.push_back(sum / static_cast<double>(rec.calls.size()));
    }
  }
  std::nth_element(excess.begin(), excess.begin() + static_cast<std::ptrdiff_t>(excess.size() / 2),
                   excess.end());
  float mine = static_cast<float>(excess.empty() ? 0.0 : excess[excess.size() / 2]);
  if (auto e = comm.all_reduce_sum(&mine, 1, Group::kTp)) return e;
  p.collective_wait_us = std::max(0.0, static_cast<double>(mine) / n * 1e6);
  return std::nullopt;
}

void profile_model(Backend& b, const model::Model& m0, Profile& p, int tp) {
  const model::Model m = as_float32(m0);
  p.forward_model = m.name;
  const hw::Cluster neutral = neutral_cluster(p);
  sim::ServingOptions so;
  so.enforce_eager = true;
  so.dtype = model::DType::kF32;
  so.max_num_batched_tokens = 4096;
  so.max_num_seqs = 256;
  auto opts = sim::resolve_options(m, neutral.gpu, so);
  if (!opts) return;
  // With tp > 1: TP rank 0's share of the forward, its collectives skipped (a job of one rank),
  // so that its operators are timed at the shapes a rank of that split computes.
  sim::ParallelConfig split;
  split.tp = tp;
  sim::StepCostModel cost(m, neutral, split, *opts);
  SplitTimer timer(b.comm(), b);
  const DecodeSet set(m);
  const std::int64_t bs = set.bs, max_seqs = set.max_seqs, context = set.context;
  Decoder dec(m, split, Place{}, timer, set.blocks(), bs);
  dec.load_seeded();
  // The decode batches' cache: 64 sequences of 128 tokens, prefilled once.
  StageOut out;
  dec.forward(set.fill, nullptr, out, false);
  auto& sized = p.gemm_samples;
  auto measure = [&](const Step& step, bool decode) {
    Profile::ForwardPoint fp;
    fp.tokens = step.rows();
    fp.decode = decode;
    std::vector<double> g, a, r;
    std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::vector<double>> per_gemm;
    std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, int> count;
    for (int k = 0; k < 8; ++k) {  // a warm-up, then the median of 7
      timer.gemm_s = timer.attention_s = 0;
      timer.calls.clear();
      timer.record = k > 0;
      const double t0 = now_s();
      dec.forward(step, nullptr, out, false);
      const double total = now_s() - t0;
      if (k == 0) continue;  // warm-up
      for (const auto& [key, tc] : timer.calls) {
        per_gemm[key].push_back(tc.first);
        count[key] = tc.second;
      }
      g.push_back(timer.gemm_s);
      a.push_back(timer.attention_s);
      r.push_back(total - timer.gemm_s - timer.attention_s);
    }
    auto med = [](std::vector<double> v) {
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
      return v[v.size() / 2];
    };
    fp.gemm_s = med(g);
    fp.attention_s = med(a);
    // Each GEMM shape's efficiency: the step model's time for it at efficiency 1 (its gemm_time
    // on this machine's peak and copy bandwidth) over the time its calls took.
    for (auto& [key, ts] : per_gemm) {
      const auto [n, k, rows] = key;
      const double N = static_cast<double>(n), K = static_cast<double>(k), M = static_cast<double>(rows);
      const double t_full = std::max(2 * M * N * K / p.peak_flops_per_s,
                                     (N * K + M * (N + K)) * 4 / (p.copy_GBps * 1e9));
      sized[{n * k * 4, rows}].push_back(
          std::clamp(static_cast<double>(count[key]) * t_full / med(ts), 1e-4, 1.0));
    }
    fp.rest_s = med(r);
    sim::BatchShape shape;
    for (const auto& s : step.seqs) shape.add(s.new_tokens, s.context);
    const sim::StepCost c = cost.cost(0, shape);
    fp.model_gemm_s = c.gemm;
    fp.model_attention_s = c.attention;
    fp.model_elem_s = c.elementwise;
    fp.tp = tp;
    fp.elem_bytes_per_token = c.elementwise * p.copy_GBps * 1e9 /
                              (static_cast<double>(fp.tokens) * static_cast<double>(m.num_layers));
    p.forward.push_back(fp);
  };
  for (std::int64_t n : {1, 2, 4, 8, 16, 32, 64}) measure(set.decode(n), true);
  for (std::int64_t n : {128, 256, 512, 1024, 2048}) {
    Step step;
    StepSeq q;
    q.id = 0;
    q.new_tokens = n;
    for (std::int64_t k = 0; k < n / bs + 1; ++k)
      q.blocks.push_back(static_cast<std::int32_t>(max_seqs * (context / bs + 2) + k));
    for (std::int64_t j = 0; j < n; ++j) q.tokens.push_back((j * 17) % m.vocab_size);
    q.samples = true;
    step.seqs.push_back(q);
    measure(step, false);
  }
}

void fit_forward(const model::Model& m, Profile& p) {
  // GEMM efficiency by tokens (tp = 1); attention multipliers (median ratios); the rest as a
  // line a + b x (modelled element-wise time) through tp = 1's points: b = 1 / element-wise
  // efficiency, a = the kernels' fixed cost (the step model's kernel count a step of these
  // layers).
  std::vector<double> ad, ap;
  double sx = 0, sy = 0, sxx = 0, sxy = 0, n = 0;
  p.gemm_efficiency.clear();
  for (const auto& f : p.forward) {
    if (f.attention_s > 0) (f.decode ? ad : ap).push_back(f.model_attention_s / f.attention_s);
    if (f.tp != 1) continue;
    p.gemm_efficiency.emplace_back(static_cast<double>(f.tokens),
                                   std::clamp(f.model_gemm_s / f.gemm_s, 1e-4, 1.0));
    sx += f.model_elem_s;
    sy += f.rest_s;
    sxx += f.model_elem_s * f.model_elem_s;
    sxy += f.model_elem_s * f.rest_s;
    n += 1;
  }
  std::sort(p.gemm_efficiency.begin(), p.gemm_efficiency.end());
  p.gemm_by_size.clear();
  for (auto& [key, effs] : p.gemm_samples) {  // sorted by bytes, then rows (the map's order)
    std::nth_element(effs.begin(), effs.begin() + static_cast<std::ptrdiff_t>(effs.size() / 2), effs.end());
    p.gemm_by_size.push_back({static_cast<double>(key.first), static_cast<double>(key.second),
                              effs[effs.size() / 2]});
  }
  for (std::size_t k = 1; k < p.gemm_efficiency.size(); ++k)  // one point per token count
    if (p.gemm_efficiency[k].first <= p.gemm_efficiency[k - 1].first)
      p.gemm_efficiency[k].first = p.gemm_efficiency[k - 1].first + 1;
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 1.0 : v[v.size() / 2];
  };
  p.attention_decode = median(ad);
  p.attention_prefill = median(ap);
  const double slope = (n * sxy - sx * sy) / std::max(1e-30, n * sxx - sx * sx);
  const double intercept = (sy - slope * sx) / std::max(1.0, n);
  p.elementwise = slope > 0 ? 1 / slope : 1;
  const double kernels = 12.0 * static_cast<double>(m.num_layers - m.num_moe_layers()) +
                         20.0 * static_cast<double>(m.num_moe_layers());
  p.launch_us = std::max(0.0, intercept) / kernels * 1e6;
  // Element-wise by size: each point's modelled time over what it took beyond the kernels'
  // fixed cost, keyed by the bytes a token and layer (which TP shrinks) and the tokens.
  p.elementwise_by_size.clear();
  std::map<std::pair<std::int64_t, std::int64_t>, double> by;
  for (const auto& f : p.forward) {
    const double rest = f.rest_s - p.launch_us * 1e-6 * kernels;
    if (rest <= 0) continue;
    by[{static_cast<std::int64_t>(std::llround(f.elem_bytes_per_token)), f.tokens}] =
        std::clamp(f.model_elem_s / rest, 1e-4, 1.0);
  }
  for (const auto& [key, eff] : by)
    p.elementwise_by_size.push_back({static_cast<double>(key.first), static_cast<double>(key.second), eff});
}

CollectivePoint collective_point(std::int64_t bytes, double seconds, double bus_factor) {
  CollectivePoint c;
  c.bytes = bytes;
  c.time_us = seconds * 1e6;
  c.algbw_GBps = static_cast<double>(bytes) / seconds / 1e9;
  c.busbw_GBps = c.algbw_GBps * bus_factor;
  return c;
}

std::optional<Error> profile_collectives(Comm& comm, Profile& p) {
  const int n = comm.group_size(Group::kTp);
  p.ranks = n;
  if (n < 2) return std::nullopt;
  for (std::int64_t bytes = 4; bytes <= (std::int64_t{16} << 20); bytes *= 4) {
    const auto count = static_cast<std::size_t>(bytes / 4);
    std::vector<float> buf(count, 1.0f);
    std::optional<Error> err;
    if (auto e = comm.barrier()) return e;
    const double t = median_collective_s([&] {
      if (!err) err = comm.all_reduce_sum(buf.data(), count, Group::kTp);
    }, bytes);
    if (err) return err;
    p.all_reduce.push_back(collective_point(bytes, t, 2.0 * (n - 1) / n));
  }
  for (std::int64_t bytes = 4; bytes <= (std::int64_t{16} << 20); bytes *= 4) {
    std::vector<std::uint8_t> buf(static_cast<std::size_t>(bytes));
    std::optional<Error> err;
    const int me = comm.rank();
    auto ping = [&] {
      if (err || me > 1) return;
      if (me == 0) {
        if (!err) err = comm.send(buf.data(), buf.size(), 1, 77);
        if (!err) err = comm.recv(buf.data(), buf.size(), 1, 78);
      } else {
        if (!err) err = comm.recv(buf.data(), buf.size(), 0, 77);
        if (!err) err = comm.send(buf.data(), buf.size(), 0, 78);
      }
    };
    if (auto e = comm.barrier()) return e;
    const double t = median_collective_s(ping, bytes) / 2;  // one way
    if (err) return err;
    p.send_recv.push_back(collective_point(bytes, t, 1.0));
  }
  return std::nullopt;
}

std::string collective_table(const std::vector<CollectivePoint>& pts, const std::string& op,
                             int ranks) {
  std::string s = fmt::format("# {} over {} ranks (nccl-tests' columns; time is the median)\n", op, ranks);
  s += fmt::format("{:>12}{:>12}{:>8}{:>12}{:>10}{:>10}\n", "size", "count", "type", "time(us)",
                   "algbw", "busbw");
  for (const auto& c : pts)
    s += fmt::format("{:>12}{:>12}{:>8}{:>12.2f}{:>10.3f}{:>10.3f}\n", c.bytes, c.bytes / 4,
                     "float", c.time_us, c.algbw_GBps, c.busbw_GBps);
  return s;
}

std::string profile_yaml(const Profile& p, const std::string& name, double memory_GiB,
                         const std::string& date) {
  const std::string where = fmt::format("tpp-profile on {} ({} cores, {} ranks), {}", p.host,
                                        p.cores, p.ranks, date);
  const double tflops = p.peak_flops_per_s / 1e12;
  std::string y = fmt::format(
      "# This machine, measured by tpp-profile: one rank per core, each a \"GPU\" of the plan.\n"
      "name: {}\nnodes: 1\ngpus_per_node: {}\n"
      "transport: mpi  # the ranks' collectives are MPI's, not NCCL's\ngpu:\n  name: {}\n",
      name, std::max(1, p.ranks), name);
  auto fig = [&](const char* key, double v, const std::string& src) {
    y += fmt::format("  {}: {{value: {:.6g}, source: \"{}\"}}\n", key, v, src);
  };
  fig("memory_marketed_GB", std::ceil(memory_GiB * 1.073741824), "the budget given to tpp-profile (--memory-gib), rounded up to GB");
  fig("memory_driver_GiB", memory_GiB, "the budget given to tpp-profile (--memory-gib): what a rank may use, as a GPU's total");
  fig("hbm_bandwidth_GBps", p.copy_GBps, where + ": a 256 MiB memcpy, read + write bytes per second");
  fig("bf16_dense_tflops", tflops, where + ": the best float32 GEMM rate of one rank (Eigen; the CPU computes in float32)");
  fig("fp16_dense_tflops", tflops, where + ": as bf16 (float32 GEMMs)");
  fig("fp8_dense_tflops", 0, "no fp8 arithmetic on the CPU backend");
  fig("int8_dense_tops", tflops, where + ": as bf16 (float32 GEMMs)");
  y += "  has_fp8: {value: false, source: \"no fp8 arithmetic on the CPU backend\"}\n";
  fig("nvlink_unidir_GBps", 0, "no NVLink: ranks talk through MPI");
  const double link = p.send_recv.empty() ? p.copy_GBps / 2 : p.send_recv.back().algbw_GBps;
  fig("pcie_unidir_GBps", link, where + ": MPI send/recv of 16 MiB between two ranks, one way");
  fig("tdp_W", 1, "not measured: a CPU core has no board power of its own (unused by tpp)");
  fig("sm_count", 1, "one core a rank (sizes vLLM's sampler buffers; no SMs on a CPU)");
  fig("compute_capability", 8.0, "not a GPU: 8.0 picks vLLM's defaults for a GPU without fp8 or FlashMLA");
  y += fmt::format("  runtime_memory: {{non_torch_GiB: {:.4f}, non_torch_tp_GiB: {:.4f}, "
                   "cuda_graph_GiB: 0, source: \"{}: resident growth from MPI's start and "
                   "collectives; no CUDA graphs\"}}\n",
                   p.runtime_memory_GiB, p.runtime_memory_GiB, where);
  const double latency = p.send_recv.empty() ? 1.0 : p.send_recv.front().time_us;
  y += fmt::format("intra_node: {{kind: pcie, bandwidth_GBps: {:.6g}, latency_us: {:.6g}}}  # MPI "
                   "send/recv, 16 MiB and 4 B\n",
                   link, latency);
  if (p.storage_read_GBps > 0)
    y += fmt::format("storage_read_GBps: {{value: {:.6g}, source: \"{}: a 256 MiB file read after "
                     "posix_fadvise(DONTNEED) dropped it from the page cache\"}}\n",
                     p.storage_read_GBps, where);
  const bool fwd = !p.forward.empty();
  y += fmt::format("efficiency:\n  source: \"{}; {}\"\n  memory: 1\n  gemm_memory: {:.4f}\n"
                   "  tile_rows: 1\n  launch_us: {:.4f}\n  launch_graph_us: {:.4f}\n",
                   where,
                   fwd ? "operators timed apart in a single-rank forward of " + p.forward_model +
                             " (decode batches of 1-64 sequences, prefills of 128-2048 tokens)"
                       : "GEMMs: " + p.gemm_shapes,
                   std::max(0.01, p.gemm_memory_fraction), p.launch_us, p.launch_us);
  if (fwd)
    y += fmt::format("  elementwise: {:.4f}\n  attention_decode: {:.4f}\n  attention_prefill: {:.4f}\n",
                     p.elementwise, p.attention_decode, p.attention_prefill);
  if (p.collective_wait_us > 0)
    y += fmt::format("  collective_wait_us: {:.4f}  # a TP collective inside a {}-rank forward of "
                     "{}, beyond its tight-loop time\n",
                     p.collective_wait_us, p.ranks, p.forward_model);
  y += "  gemm: [";
  if (fwd) {
    for (std::size_t k = 0; k < p.gemm_efficiency.size(); ++k)
      y += fmt::format("{}[{}, {:.4f}]", k ? ", " : "", p.gemm_efficiency[k].first,
                       p.gemm_efficiency[k].second);
  } else {
    for (std::size_t k = 0; k < p.gemm.size(); ++k)
      y += fmt::format("{}[{}, {:.4f}]", k ? ", " : "", p.gemm[k].m,
                       std::clamp(p.gemm[k].flops_per_s / p.peak_flops_per_s, 0.0001, 1.0));
  }
  y += "]\n";
  if (!p.elementwise_by_size.empty()) {
    y += "  # element-wise by bytes a token and layer and tokens: [bytes, tokens, fraction]\n"
         "  elementwise_by_size: [";
    for (std::size_t k = 0; k < p.elementwise_by_size.size(); ++k)
      y += fmt::format("{}[{}, {}, {:.4f}]", k ? ", " : "", p.elementwise_by_size[k][0],
                       p.elementwise_by_size[k][1], p.elementwise_by_size[k][2]);
    y += "]\n";
  }
  if (!p.gemm_by_size.empty()) {
    y += "  # by weight matrix (bytes) and rows: [bytes, tokens, fraction]\n  gemm_by_size: [";
    for (std::size_t k = 0; k < p.gemm_by_size.size(); ++k)
      y += fmt::format("{}[{}, {}, {:.4f}]", k ? ", " : "", p.gemm_by_size[k][0],
                       p.gemm_by_size[k][1], p.gemm_by_size[k][2]);
    y += "]\n";
  }
  if (!p.all_reduce.empty()) {
    y += "collectives:\n";
    auto table = [&](const char* op, const std::vector<CollectivePoint>& pts, int ranks) {
      y += fmt::format("  - op: {}\n    scope: intra_node\n    ranks: {}\n    source: \"{}: "
                       "MPI, median of 5\"\n    points: [",
                       op, ranks, where);
      for (std::size_t k = 0; k < pts.size(); ++k)
        y += fmt::format("{}[{}, {:.4f}]", k ? ", " : "", pts[k].bytes, pts[k].time_us);
      y += "]\n";
    };
    for (const auto& [n, pts] : p.all_reduce_smaller) table("all_reduce", pts, n);
    table("all_reduce", p.all_reduce, p.ranks);
    table("send_recv", p.send_recv, 2);
  }
  return y;
}

}  // namespace tpp::exec
