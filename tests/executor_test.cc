// The executor's parts without MPI: seeded weights and their shards, the CPU backend against
// the kernels' references, checkpoints (both formats give the seeded bits; bad files give one
// line naming the file and the tensor), and plan files (read back equal, other versions
// refused). The MPI runs themselves are tests/executor_mpi_test.sh.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "executor/backend.h"
#include "executor/checkpoint.h"
#include "executor/decoder.h"
#include "executor/layout.h"
#include "executor/plan.h"
#include "executor/safetensors.h"
#include "executor/weights.h"
#include "kernels/ops.h"
#include "model/load.h"
#include "simulator/memory.h"
#include "cli_util.h"

namespace fs = std::filesystem;
using namespace tpp;
using namespace tpp::exec;

namespace {

model::Model f32(const std::string& name) {
  auto m = model::load_model(std::string(TPP_EXAMPLES) + "/" + name + ".yaml");
  EXPECT_TRUE(m) << (m ? "" : m.error().str());
  model::Model out = *m;
  out.dtype = model::DType::kF32;
  out.quant.weight_dtype = model::DType::kF32;
  return out;
}

sim::ParallelConfig cfg(std::int64_t tp, std::int64_t pp, std::int64_t dp = 1, bool ep = false) {
  sim::ParallelConfig p;
  p.tp = tp;
  p.pp = pp;
  p.dp = dp;
  p.expert_parallel = ep;
  return p;
}

fs::path scratch(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("tpp-executor-test-" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<float> random_vec(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, s = 0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    d = std::max(d, static_cast<double>(std::fabs(a[k] - b[k])));
    s = std::max(s, static_cast<double>(std::fabs(b[k])));
  }
  return s > 0 ? d / s : d;
}

// Every buffer of two decoders, bit for bit.
void expect_same_buffers(const Decoder& a, const Decoder& b, const std::string& what) {
  const auto ta = a.tensors(), tb = b.tensors();
  ASSERT_EQ(ta.size(), tb.size()) << what;
  for (std::size_t k = 0; k < ta.size(); ++k) {
    ASSERT_EQ(ta[k].name, tb[k].name) << what;
    ASSERT_EQ(ta[k].shape, tb[k].shape) << what << " " << ta[k].name;
    std::int64_t n = 1;
    for (auto d : ta[k].shape) n *= d;
    EXPECT_EQ(0, std::memcmp(ta[k].data, tb[k].data, static_cast<std::size_t>(n) * 4))
        << what << ": " << ta[k].name << " differs";
  }
}

}  // namespace

// A shard computed from its global indices equals the same rows and columns cut from the whole
// tensor: every sharding holds the same logical weights.
TEST(SeededWeights, ShardsAreSlicesOfTheWholeTensor) {
  for (const char* name : {"tiny-llama", "tiny-mixtral", "tiny-mla"}) {
    const model::Model m = f32(name);
    for (auto p : {cfg(2, 1), cfg(4, 1), cfg(2, 1, 1, true), cfg(4, 1, 1, true)}) {
      if (!m.moe && p.expert_parallel) continue;
      std::vector<model::TensorSpec> specs = model::global_tensors(m);
      for (auto& t : model::layer_tensors(m, 0)) specs.push_back(t);
      for (const auto& t : specs) {
        ShardMap whole;
        whole.rows = whole.global_rows = t.rows;
        whole.cols = t.cols;
        whole.count = t.count;
        const auto full = seeded_shard(t, whole);
        for (int r = 0; r < p.tp; ++r) {
          Place at;
          at.tp = r;
          const ShardMap sm = shard_map(t, m, p, r, ep_index(at, p));
          const auto mine = seeded_shard(t, sm);
          const auto cut = cut_shard(t, sm, [&](std::int64_t e) {
            return full.data() + e * t.rows * t.cols;
          });
          ASSERT_EQ(mine, cut) << name << " " << t.name << " tp rank " << r << " of " << p.tp
                               << (p.expert_parallel ? " (EP)" : "");
        }
      }
    }
  }
}

// Weights stay usable: finite, roughly unit-variance projections, and not all one value.
TEST(SeededWeights, ScaledByFanIn) {
  const model::Model m = f32("tiny-llama");
  for (const auto& t : model::layer_tensors(m, 0)) {
    if (t.cols == 1) continue;
    ShardMap whole;
    whole.rows = whole.global_rows = t.rows;
    whole.cols = t.cols;
    whole.count = t.count;
    const auto v = seeded_shard(t, whole);
    double sum2 = 0;
    for (float x : v) {
      ASSERT_TRUE(std::isfinite(x));
      sum2 += static_cast<double>(x) * x;
    }
    const double var = sum2 / static_cast<double>(v.size());
    EXPECT_NEAR(var * static_cast<double>(t.cols), 1.0, 0.1) << t.name;  // Var = 1 / fan_in
  }
}

// The CPU backend's operators against the kernels' references, on the same inputs.
TEST(CpuBackend, MatchesTheKernelReferences) {
  LocalComm comm;
  auto b = make_cpu_backend(comm);
  const std::int64_t rows = 5, cols = 64, heads = 4, kv = 2, dim = 16, bs = 4;
  {  // add_rmsnorm, with and without the residual
    auto x = random_vec(rows * cols, 1), w = random_vec(cols, 2), r1 = random_vec(rows * cols, 3);
    auto r2 = r1;
    std::vector<float> y1(rows * cols), y2(rows * cols);
    b->add_rmsnorm(x.data(), r1.data(), w.data(), y1.data(), rows, cols, 1e-6f);
    kernels::add_rmsnorm_ref(x.data(), r2.data(), w.data(), y2.data(), rows, cols, 1e-6f);
    EXPECT_LT(max_rel(y1, y2), 1e-5);
    EXPECT_LT(max_rel(r1, r2), 1e-6);
  }
  {  // rope on part of each head, positions up to 300
    auto x1 = random_vec(rows * heads * dim, 4);
    auto x2 = x1;
    StepMeta meta;
    meta.rows = rows;
    meta.positions = {0, 7, 31, 129, 300};
    b->begin_step(meta);
    Rope r;
    r.inv_freq.resize(4);
    kernels::rope_inv_freq(10000.0f, 8, r.inv_freq.data());
    b->rope(x1.data(), rows, heads, dim, 4, 8, r);
    kernels::rope_neox_ref(x2.data(), meta.positions.data(), rows, heads, dim, 4, 8, 10000.0f);
    EXPECT_LT(max_rel(x1, x2), 1e-5);
    // GPT-J's interleaved pairs with an attention factor (DeepSeek's YaRN in vLLM)
    auto x3 = random_vec(rows * heads * dim, 40);
    auto x4 = x3;
    Rope y;
    y.inv_freq.resize(4);
    kernels::yarn_inv_freq(10000.0f, 8, 40.0f, 4096, 32.0f, 1.0f, y.inv_freq.data());
    y.mscale = kernels::yarn_mscale(40.0f, 0.707f, 1.0f);
    y.neox = false;
    b->rope(x3.data(), rows, heads, dim, 0, 8, y);
    kernels::rope_ref(x4.data(), meta.positions.data(), rows, heads, dim, 0, 8, y.inv_freq.data(),
                      y.mscale, false);
    EXPECT_LT(max_rel(x3, x4), 1e-5);
  }
  {  // silu_mul
    auto g = random_vec(rows * 2 * cols, 5);
    std::vector<float> o1(rows * cols), o2(rows * cols);
    b->silu_mul(g.data(), o1.data(), rows, cols);
    kernels::silu_mul_ref(g.data(), o2.data(), rows, cols);
    EXPECT_LT(max_rel(o1, o2), 1e-6);
  }
  {  // paged attention: two sequences, one prefilling after a cached prefix, one decoding
    const std::int64_t blocks = 8;
    std::vector<std::int32_t> t0 = {3, 1, 6}, t1 = {0, 5};
    std::vector<kernels::PagedSeq> seqs = {{0, 3, 5, t0.data()}, {3, 1, 6, t1.data()}};
    const std::int64_t n = 4;
    auto k = random_vec(n * kv * dim, 6), v = random_vec(n * kv * dim, 7);
    auto kp = random_vec(blocks * kv * bs * dim, 8), vp = random_vec(blocks * kv * bs * dim, 9);
    auto kp2 = kp, vp2 = vp;
    StepMeta meta;
    meta.rows = n;
    meta.seqs = seqs;
    meta.block_size = bs;
    b->begin_step(meta);
    b->kv_write(k.data(), v.data(), kp.data(), vp.data(), kv, dim);
    kernels::kv_write_ref(k.data(), v.data(), kp2.data(), vp2.data(), seqs.data(), 2, kv, dim, bs);
    EXPECT_EQ(kp, kp2);
    EXPECT_EQ(vp, vp2);
    auto q = random_vec(n * heads * dim, 10);
    std::vector<float> o1(n * heads * dim), o2(n * heads * dim);
    b->paged_attention(q.data(), kp.data(), vp.data(), heads, kv, dim, 0.25f, o1.data());
    kernels::paged_attention_ref(q.data(), kp.data(), vp.data(), seqs.data(), 2, heads, kv, dim, bs, 0.25f,
                                 o2.data());
    EXPECT_LT(max_rel(o1, o2), 1e-5);
  }
  {  // MLA over the latent cache
    const std::int64_t lora = 16, rope = 8, width = lora + rope, blocks = 6;
    std::vector<std::int32_t> t0 = {2, 4}, t1 = {5, 0, 1};
    std::vector<kernels::PagedSeq> seqs = {{0, 2, 3, t0.data()}, {2, 1, 9, t1.data()}};
    const std::int64_t n = 3;
    auto lat = random_vec(n * width, 11), pool = random_vec(blocks * bs * width, 12);
    auto pool2 = pool;
    StepMeta meta;
    meta.rows = n;
    meta.seqs = seqs;
    meta.block_size = bs;
    b->begin_step(meta);
    b->latent_write(lat.data(), pool.data(), width);
    kernels::latent_write_ref(lat.data(), pool2.data(), seqs.data(), 2, width, bs);
    EXPECT_EQ(pool, pool2);
    auto ql = random_vec(n * heads * lora, 13), qp = random_vec(n * heads * rope, 14);
    std::vector<float> o1(n * heads * lora), o2(n * heads * lora);
    b->mla_attention(ql.data(), qp.data(), pool.data(), heads, lora, rope, 0.2f, o1.data());
    kernels::mla_attention_ref(ql.data(), qp.data(), pool.data(), seqs.data(), 2, heads, lora, rope, bs, 0.2f,
                               o2.data());
    EXPECT_LT(max_rel(o1, o2), 1e-5);
  }
  {  // experts: routing, permutation, grouped GEMMs and combination against a plain loop
    const std::int64_t E = 8, k = 2, h = 12, inter = 6, first = 2, local = 4;
    auto x = random_vec(rows * h, 41), logits = random_vec(rows * E, 15);
    auto w13 = random_vec(local * 2 * inter * h, 42), w2 = random_vec(local * h * inter, 43);
    std::vector<float> out(rows * h), ref(rows * h, 0.0f);
    b->moe(x.data(), logits.data(), rows, h, E, k, w13.data(), w2.data(), first, local, inter,
           out.data());
    std::vector<std::int32_t> ids(rows * k);
    std::vector<float> wts(rows * k);
    kernels::topk_softmax_ref(logits.data(), rows, E, k, ids.data(), wts.data());
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < k; ++j) {
        const std::int64_t e = ids[r * k + j] - first;
        if (e < 0 || e >= local) continue;
        std::vector<float> g(2 * inter), a(inter);
        for (std::int64_t o = 0; o < 2 * inter; ++o)
          for (std::int64_t c = 0; c < h; ++c)
            g[o] += x[r * h + c] * w13[(e * 2 * inter + o) * h + c];
        kernels::silu_mul_ref(g.data(), a.data(), 1, inter);
        for (std::int64_t o = 0; o < h; ++o) {
          float y = 0;
          for (std::int64_t c = 0; c < inter; ++c) y += a[c] * w2[(e * h + o) * inter + c];
          ref[r * h + o] += wts[r * k + j] * y;
        }
      }
    EXPECT_LT(max_rel(out, ref), 1e-5);
  }
  {  // batched GEMM with row strides (MLA's per-head absorption) against per-batch GEMMs
    const std::int64_t m = 3, n = 5, k = 4, batch = 3, ldx = batch * k + 2, ldy = batch * n;
    auto x = random_vec(m * ldx, 44), w = random_vec(batch * n * k, 45);
    std::vector<float> y(m * ldy, 0.0f), ref(m * ldy, 0.0f);
    b->gemm_batched(x.data(), ldx, k, w.data(), n * k, y.data(), ldy, n, m, n, k, batch);
    for (std::int64_t bt = 0; bt < batch; ++bt)
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j)
          for (std::int64_t l = 0; l < k; ++l)
            ref[i * ldy + bt * n + j] += x[i * ldx + bt * k + l] * w[(bt * n + j) * k + l];
    EXPECT_LT(max_rel(y, ref), 1e-5);
  }
  {  // sampling: the same choices
    auto logits = random_vec(rows * 8, 15);
    std::vector<std::int64_t> a1(rows), a2(rows);
    b->argmax(logits.data(), rows, 8, a1.data());
    kernels::argmax_ref(logits.data(), rows, 8, a2.data());
    EXPECT_EQ(a1, a2);
  }
  {  // embedding: rows outside this rank's vocabulary slice are zero
    auto table = random_vec(10 * cols, 16);
    std::vector<std::int64_t> tok = {3, 12, 17, 25};
    std::vector<float> e1(4 * cols), e2(4 * cols);
    StepMeta meta;
    meta.rows = 4;
    meta.tokens = tok;
    b->begin_step(meta);
    b->embedding(table.data(), 10, 10, cols, e1.data());
    kernels::embedding_ref(tok.data(), 4, table.data(), 10, 10, cols, e2.data());
    EXPECT_EQ(e1, e2);
  }
  {  // GEMM against the plain triple loop
    const std::int64_t m = 7, n = 9, k = 33;
    auto x = random_vec(m * k, 17), w = random_vec(n * k, 18);
    std::vector<float> y(m * n), ref(m * n, 0);
    b->gemm(x.data(), w.data(), y.data(), m, n, k);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t l = 0; l < k; ++l) ref[i * n + j] += x[i * k + l] * w[j * k + l];
    EXPECT_LT(max_rel(y, ref), 1e-5);
  }
}

// Seeded, saved per rank and loaded back, and cut from a whole Hugging Face checkpoint: the
// same bits on every rank of every split.
TEST(Checkpoint, BothFormatsGiveTheSeededWeights) {
  LocalComm comm;
  auto backend = make_cpu_backend(comm);
  for (const char* name : {"tiny-llama", "tiny-mixtral", "tiny-mla"}) {
    const model::Model m = f32(name);
    const fs::path hf = scratch(std::string("hf-") + name);
    ASSERT_FALSE(write_hf_checkpoint(m, hf.string()));
    for (auto p : {cfg(1, 1), cfg(2, 2), cfg(4, 1), cfg(2, 1, 1, true)}) {
      if (!m.moe && p.expert_parallel) continue;
      const fs::path dir = scratch(std::string("sharded-") + name);
      for (int pp = 0; pp < p.pp; ++pp)
        for (int tp = 0; tp < p.tp; ++tp) {
          Place at;
          at.pp = pp;
          at.tp = tp;
          const std::string what = std::string(name) + " tp" + std::to_string(p.tp) + " pp" +
                                   std::to_string(p.pp) + (p.expert_parallel ? " EP" : "") +
                                   " rank (pp " + std::to_string(pp) + ", tp " + std::to_string(tp) + ")";
          Decoder seeded(m, p, at, *backend, 4, 16), sharded(m, p, at, *backend, 4, 16),
              whole(m, p, at, *backend, 4, 16);
          seeded.load_seeded();
          const int rank = checkpoint_rank(at, p);
          auto saved = save_sharded(seeded, dir.string(), rank);
          ASSERT_TRUE(saved) << saved.error().str();
          EXPECT_TRUE(fs::exists(dir / sharded_file_name(rank, 0)));
          auto a = load_sharded(sharded, dir.string(), rank);
          ASSERT_TRUE(a) << a.error().str();
          expect_same_buffers(seeded, sharded, what + ", sharded_state");
          auto c = load_hf(whole, hf.string());
          ASSERT_TRUE(c) << c.error().str();
          expect_same_buffers(seeded, whole, what + ", Hugging Face checkpoint");
          EXPECT_EQ(a->bytes_read, sharded_load_bytes(m, p, at)) << what;
          EXPECT_EQ(c->bytes_read, hf_load_bytes(m, p, at)) << what;
        }
    }
  }
}

// vLLM's parts: a rank's parameters split into files of at most max_size bytes.
TEST(Checkpoint, LargeRanksWriteSeveralParts) {
  LocalComm comm;
  auto backend = make_cpu_backend(comm);
  const model::Model m = f32("tiny-llama");
  Decoder d(m, cfg(1, 1), Place{}, *backend, 4, 16), back(m, cfg(1, 1), Place{}, *backend, 4, 16);
  d.load_seeded();
  const fs::path dir = scratch("parts");
  auto st = save_sharded(d, dir.string(), 0, 1 << 20);
  ASSERT_TRUE(st) << st.error().str();
  EXPECT_GT(st->files, 3);
  EXPECT_TRUE(fs::exists(dir / "model-rank-0-part-1.safetensors"));
  auto a = load_sharded(back, dir.string(), 0);
  ASSERT_TRUE(a) << a.error().str();
  expect_same_buffers(d, back, "parts");
}

namespace {

// Writes bytes as a file.
void put(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

std::string header_file(const std::string& json, std::size_t data_bytes) {
  std::string s(8, '\0');
  const std::uint64_t n = json.size();
  for (int k = 0; k < 8; ++k) s[static_cast<std::size_t>(k)] = static_cast<char>(n >> (8 * k));
  return s + json + std::string(data_bytes, '\0');
}

}  // namespace

// A file that lies is refused with one line naming the file and, where there is one, the tensor.
TEST(Safetensors, BadFilesNameTheFileAndTensor) {
  const fs::path d = scratch("bad");
  struct Case {
    std::string name, bytes, want;
  } cases[] = {
      {"short.safetensors", "abc", "shorter than a safetensors header"},
      {"len.safetensors", header_file("{}", 0).substr(0, 8) + "{", "header claims 2 bytes"},
      {"json.safetensors", header_file("{nope", 0), "not JSON"},
      {"dtype.safetensors",
       header_file(R"({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 2]}})", 2),
       "tensor 'w': dtype 'Q4'"},
      {"past.safetensors",
       header_file(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8),
       "tensor 'w': data_offsets [0, 16] run past the data"},
      {"size.safetensors",
       header_file(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8),
       "tensor 'w': data_offsets span 8 bytes, but shape and dtype F32 need 12"},
      {"overlap.safetensors",
       header_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                       "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12),
       "overlap"},
  };
  for (const auto& c : cases) {
    put(d / c.name, c.bytes);
    auto f = read_safetensors((d / c.name).string());
    ASSERT_FALSE(f) << c.name;
    const std::string msg = f.error().str();
    EXPECT_NE(msg.find(c.name), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.want), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// A checkpoint with a truncated file, or one without a tensor the stage needs, is refused
// naming it; weights of another split are refused too.
TEST(Checkpoint, MissingTruncatedOrForeignTensorsAreRefused) {
  LocalComm comm;
  auto backend = make_cpu_backend(comm);
  const model::Model m = f32("tiny-llama");
  const fs::path hf = scratch("hf-bad");
  ASSERT_FALSE(write_hf_checkpoint(m, hf.string()));
  {  // truncated
    const auto p = hf / "model.safetensors";
    fs::resize_file(p, fs::file_size(p) - 100);
    Decoder d(m, cfg(1, 1), Place{}, *backend, 4, 16);
    auto r = load_hf(d, hf.string());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().str().find("model.safetensors"), std::string::npos) << r.error().str();
    EXPECT_NE(r.error().str().find("run past the data"), std::string::npos) << r.error().str();
  }
  {  // a model with one more layer than the checkpoint: its tensors are missing
    model::Model deeper = m;
    deeper.num_layers = m.num_layers + 1;
    ASSERT_FALSE(write_hf_checkpoint(m, hf.string()));
    Decoder d(deeper, cfg(1, 1), Place{}, *backend, 4, 16);
    auto r = load_hf(d, hf.string());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().str().find("tensor 'model.layers.4."), std::string::npos) << r.error().str();
    EXPECT_NE(r.error().str().find("' is missing from the checkpoint"), std::string::npos)
        << r.error().str();
  }
  {  // tp=2 files loaded as tp=1: the shapes are not this rank's
    const fs::path dir = scratch("foreign");
    Place at;
    Decoder two(m, cfg(2, 1), at, *backend, 4, 16), one(m, cfg(1, 1), Place{}, *backend, 4, 16);
    two.load_seeded();
    ASSERT_TRUE(save_sharded(two, dir.string(), 0));
    auto r = load_sharded(one, dir.string(), 0);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().str().find("is not one of this rank's parameters"), std::string::npos)
        << r.error().str();
    auto none = load_sharded(one, dir.string(), 3);
    ASSERT_FALSE(none);
    EXPECT_NE(none.error().str().find("model-rank-3-part-0.safetensors"), std::string::npos);
  }
}

// Ranks are laid out as vLLM lays them: TP innermost, then PP, then DP.
TEST(Layout, TpInnermostThenPpThenDp) {
  const auto p = cfg(2, 3, 2);
  for (int r = 0; r < 12; ++r) {
    const Place at = place_of(r, p);
    EXPECT_EQ(at.tp, r % 2);
    EXPECT_EQ(at.pp, (r / 2) % 3);
    EXPECT_EQ(at.dp, r / 6);
    EXPECT_EQ(rank_of(at, p), r);
  }
}

// A plan file holds its model, cluster, options, split and requests; a plan of another version
// is refused in one line.
TEST(PlanFile, ReadsBackAndRefusesOtherVersions) {
  const fs::path d = scratch("plan");
  const std::string plan = (d / "plan.json").string();
  const auto r = test::tpp_plan("--model tiny-mixtral --cluster h100x2 --tp 2 --workload chat "
                                "--dtype float32 -o " + plan);
  ASSERT_EQ(r.code, 0) << r.err;
  auto p = read_plan(plan);
  ASSERT_TRUE(p) << p.error().str();
  EXPECT_EQ(p->model.name, "tiny-mixtral");
  EXPECT_EQ(p->split.tp, 2);
  EXPECT_EQ(p->cluster.gpu.name, "H100-SXM5-80GB");
  EXPECT_FALSE(p->workload.requests.empty());
  EXPECT_TRUE(p->predicted.contains("load"));
  std::ifstream in(plan);
  nlohmann::json j = nlohmann::json::parse(in);
  j["tpp_plan_version"] = 99;
  std::ofstream(plan) << j.dump();
  auto bad = read_plan(plan);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().str().find("version 99"), std::string::npos) << bad.error().str();
  // A plan with an FP4 KV cache (Blackwell) is planned, not run: one line naming the field.
  const std::string fp4 = test::write_temp("fp4.json", "");
  const auto r4 = test::tpp_plan("--model tiny-llama --cluster b200x1 --tp 1 --kv-cache-dtype nvfp4 --workload chat -o " + fp4);
  ASSERT_EQ(r4.code, 0) << r4.err;
  auto no = read_plan(fp4);
  ASSERT_FALSE(no);
  EXPECT_NE(no.error().str().find(": error: an FP4 KV cache (nvfp4) is planned, not run"), std::string::npos)
      << no.error().str();
}

// Seeded weights give a model that talks: over 300 greedy steps its logits stay finite and its
// tokens do not settle into one value or a short loop.
TEST(SeededWeights, GreedyTokensStayFiniteAndVaried) {
  LocalComm comm;
  auto backend = make_cpu_backend(comm);
  for (const char* name : {"tiny-llama", "tiny-mixtral", "tiny-mla"}) {
    const model::Model m = f32(name);
    const std::int64_t prompt = 16, steps = 300, bs = 16;
    Decoder d(m, cfg(1, 1), Place{}, *backend, (prompt + steps) / bs + 2, bs);
    d.load_seeded();
    StepSeq s;
    s.id = 0;
    for (std::int64_t b = 0; b < (prompt + steps) / bs + 2; ++b) s.blocks.push_back(static_cast<std::int32_t>(b));
    for (std::int64_t j = 0; j < prompt; ++j) s.tokens.push_back((j * 37 + 11) % m.vocab_size);
    s.new_tokens = prompt;
    s.samples = true;
    std::vector<std::int64_t> out_tokens;
    for (std::int64_t k = 0; k <= steps; ++k) {
      Step step;
      step.seqs.push_back(s);
      StageOut out;
      ASSERT_FALSE(d.forward(step, nullptr, out, true));
      for (float x : out.logits) ASSERT_TRUE(std::isfinite(x)) << name << " step " << k;
      out_tokens.push_back(out.tokens[0]);
      s.context += s.new_tokens;
      s.new_tokens = 1;
      s.tokens = {out.tokens[0]};
    }
    std::vector<std::int64_t> sorted = out_tokens;
    std::sort(sorted.begin(), sorted.end());
    const auto distinct = std::unique(sorted.begin(), sorted.end()) - sorted.begin();
    std::int64_t run = 1, longest = 1;
    for (std::size_t k = 1; k < out_tokens.size(); ++k) {
      run = out_tokens[k] == out_tokens[k - 1] ? run + 1 : 1;
      longest = std::max(longest, run);
    }
    // A loop of period p repeats the same window: count the distinct tokens of the last 100.
    std::vector<std::int64_t> tail(out_tokens.end() - 100, out_tokens.end());
    std::sort(tail.begin(), tail.end());
    const auto tail_distinct = std::unique(tail.begin(), tail.end()) - tail.begin();
    std::printf("%s: %ld distinct of %zu, longest run %ld, %ld distinct in the last 100\n", name,
                static_cast<long>(distinct), out_tokens.size(), static_cast<long>(longest),
                static_cast<long>(tail_distinct));
    EXPECT_GE(distinct, 50) << name;
    EXPECT_LE(longest, 5) << name;
    EXPECT_GE(tail_distinct, 20) << name;
  }
}

namespace {

// Pads decode-only batches to vLLM's graph sizes as the GPU backend does (padding rows: token 0,
// position 0, slot -1; padding sequences: one token at context 0), over the CPU backend, so the
// decoder's padded path (layers on more rows than the batch has) runs without a GPU. The CPU
// references write KV through the block tables, so padding sequences get a spare block.
class PaddingBackend : public ForwardingBackend {
 public:
  PaddingBackend(Comm& c, Backend& inner, std::int32_t spare)
      : ForwardingBackend(c, inner), spare_(spare) {}
  std::int64_t begin_step(const StepMeta& m) override {
    if (!m.decode_only() || m.rows == 0) return in_.begin_step(m);
    std::int64_t p = m.rows <= 1 ? 1 : m.rows <= 2 ? 2 : m.rows <= 4 ? 4 : (m.rows + 7) / 8 * 8;
    padded_ = m;
    for (std::int64_t i = m.rows; i < p; ++i) {
      padded_.tokens.push_back(0);
      padded_.positions.push_back(0);
      padded_.slots.push_back(-1);
      padded_.seqs.push_back({i, 1, 0, &spare_});
    }
    padded_.rows = p;
    padded_rows += p - m.rows;
    return in_.begin_step(padded_);
  }
  std::int64_t padded_rows = 0;

 private:
  std::int32_t spare_;
  StepMeta padded_;
};

}  // namespace

// The decoder on padded decode batches gives the tokens and logits it gives unpadded, for the
// first stage (embedding), the last (sampling only the real rows) and one between (a stage's
// input with fewer rows than the layers run on).
TEST(Decoder, PaddedDecodeBatchesGiveTheSameTokens) {
  LocalComm comm;
  auto cpu = make_cpu_backend(comm);
  for (const char* name : {"tiny-llama", "tiny-mixtral", "tiny-mla"}) {
    const model::Model m = f32(name);
    const std::int64_t seqs = 5, prompt = 6, bs = 16, blocks = seqs + 1;  // block `seqs`: spare
    PaddingBackend pad(comm, *cpu, static_cast<std::int32_t>(seqs));
    std::vector<std::int64_t> got[2];
    for (int padded = 0; padded < 2; ++padded) {
      Backend& b = padded ? static_cast<Backend&>(pad) : *cpu;
      // Two stages, so that the second gets its input from the first.
      Place s0{0, 0, 0}, s1{0, 1, 0};
      auto p = cfg(1, 2);
      Decoder first(m, p, s0, b, blocks, bs), last(m, p, s1, b, blocks, bs);
      first.load_seeded();
      last.load_seeded();
      std::vector<StepSeq> ss(seqs);
      for (std::int64_t k = 0; k < seqs; ++k) {
        ss[static_cast<std::size_t>(k)].id = k;
        ss[static_cast<std::size_t>(k)].blocks = {static_cast<std::int32_t>(k)};
        for (std::int64_t j = 0; j < prompt; ++j)
          ss[static_cast<std::size_t>(k)].tokens.push_back((k * 31 + j * 7 + 3) % m.vocab_size);
        ss[static_cast<std::size_t>(k)].new_tokens = prompt;
        ss[static_cast<std::size_t>(k)].samples = true;
      }
      for (int step = 0; step < 4; ++step) {  // a prefill, then decode steps of 5 rows (-> 8)
        Step st;
        st.seqs = ss;
        StageOut mid, out;
        ASSERT_FALSE(first.forward(st, nullptr, mid, false));
        ASSERT_FALSE(last.forward(st, &mid, out, false));
        ASSERT_EQ(out.tokens.size(), static_cast<std::size_t>(seqs));
        for (std::int64_t k = 0; k < seqs; ++k) {
          auto& q = ss[static_cast<std::size_t>(k)];
          got[padded].push_back(out.tokens[static_cast<std::size_t>(k)]);
          q.context += q.new_tokens;
          q.new_tokens = 1;
          q.tokens = {out.tokens[static_cast<std::size_t>(k)]};
        }
      }
    }
    EXPECT_EQ(got[0], got[1]) << name;
    EXPECT_GT(pad.padded_rows, 0) << name;
  }
}
