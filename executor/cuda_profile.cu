// tpp-profile --backend cuda's measurements (see cuda_profile.h). The methods are
// bench/gpu_probe.cu's: warm-ups, then the median of repeated runs timed with CUDA events.
#include "executor/cuda_profile.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kernels/cuda_ops.h"

namespace tpp::exec {
namespace {

struct Failure {
  std::string message;
};

void check(cudaError_t e, const char* what, int line) {
  if (e != cudaSuccess)
    throw Failure{fmt::format("cuda_profile.cu:{}: {} failed: {}", line, what, cudaGetErrorString(e))};
}
void check(cublasStatus_t e, const char* what, int line) {
  if (e != CUBLAS_STATUS_SUCCESS)
    throw Failure{fmt::format("cuda_profile.cu:{}: {} failed: cuBLAS status {}", line, what,
                              static_cast<int>(e))};
}
void check(ncclResult_t e, const char* what, int line) {
  if (e != ncclSuccess)
    throw Failure{fmt::format("cuda_profile.cu:{}: {} failed: {}", line, what, ncclGetErrorString(e))};
}
void check(const kernels::KernelStatus& s, const char* what, int line) {
  if (!s.ok) throw Failure{fmt::format("cuda_profile.cu:{}: {}: {}", line, what, s.message)};
}
#define CK(x) check((x), #x, __LINE__)

// Device memory that frees itself.
struct Buf {
  void* p = nullptr;
  std::size_t bytes = 0;
  Buf() = default;
  explicit Buf(std::size_t n, int fill = 0) : bytes(n) {
    CK(cudaMalloc(&p, n));
    CK(cudaMemset(p, fill, n));
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  ~Buf() {
    if (p) cudaFree(p);
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  Events() {
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
  }
  ~Events() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
};

// The median over `reps` runs of f() on stream s, in seconds, after `warm` untimed runs.
template <class F>
double median_s(cudaStream_t s, F&& f, int reps = 21, int warm = 3) {
  for (int w = 0; w < warm; ++w) f();
  CK(cudaStreamSynchronize(s));
  Events ev;
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(ev.a, s));
    f();
    CK(cudaEventRecord(ev.b, s));
    CK(cudaEventSynchronize(ev.b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, ev.a, ev.b));
    t.push_back(ms);
  }
  CK(cudaGetLastError());
  std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
  return t[t.size() / 2] * 1e-3;
}

// As median_s, for a call too short to time alone: `inner` calls a run.
template <class F>
double median_each_s(cudaStream_t s, F&& f, int inner, int reps = 11) {
  return median_s(
             s, [&] { for (int k = 0; k < inner; ++k) f(); }, reps, 1) /
         inner;
}

__global__ void empty_kernel() {}

// Reads n float4s and writes one partial sum a block (so the loads are not optimised away).
__global__ void read_kernel(const float4* __restrict__ x, std::size_t n, float* out) {
  float acc = 0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float4 v = x[i];
    acc += v.x + v.y + v.z + v.w;
  }
  if (acc == 1.2345f) out[blockIdx.x] = acc;  // practically never: no store traffic
}

void measure_launch(cudaStream_t s, CudaProfile& p) {
  const int kLaunches = 1000;
  p.launch_us = median_s(s, [&] {
    for (int k = 0; k < kLaunches; ++k) empty_kernel<<<1, 32, 0, s>>>();
  }, 21, 2) * 1e6 / kLaunches;
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int k = 0; k < kLaunches; ++k) empty_kernel<<<1, 32, 0, s>>>();
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  p.launch_graph_us = median_s(s, [&] { cudaGraphLaunch(ge, s); }, 21, 2) * 1e6 / kLaunches;
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
}

void measure_memory(cudaStream_t s, const cudaDeviceProp& prop, CudaProfile& p) {
  const std::size_t bytes = std::size_t{1} << 30;
  Buf x(bytes), y(bytes);
  const double t = median_s(s, [&] {
    cudaMemcpyAsync(y.p, x.p, bytes, cudaMemcpyDeviceToDevice, s);
  }, 11, 2);
  p.copy_GBps = 2.0 * static_cast<double>(bytes) / t / 1e9;
  Buf out(sizeof(float) * 65536);
  const int blocks = std::min(65536, prop.multiProcessorCount * 8);
  const double tr = median_s(s, [&] {
    read_kernel<<<blocks, 512, 0, s>>>(x.as<float4>(), bytes / sizeof(float4), out.as<float>());
  }, 11, 2);
  p.read_GBps = static_cast<double>(bytes) / tr / 1e9;
}

// bf16 GEMMs through cuBLAS (gpu_probe's call: W [n, k] row-major is column-major [k, n]).
void measure_gemm_bf16(cudaStream_t s, const CudaProfileOptions& o,
                       const std::vector<std::pair<std::int64_t, std::int64_t>>& shapes,
                       CudaProfile& p) {
  cublasHandle_t h;
  CK(cublasCreate(&h));
  std::unique_ptr<cublasContext, void (*)(cublasContext*)> guard(h, [](cublasContext* c) { cublasDestroy(c); });
  CK(cublasSetStream(h, s));
  std::int64_t max_n = 0, max_k = 0, max_m = 0;
  for (auto [n, k] : shapes) max_n = std::max(max_n, n), max_k = std::max(max_k, k);
  for (auto m : o.rows) max_m = std::max(max_m, m);
  Buf w(sizeof(__nv_bfloat16) * static_cast<std::size_t>(max_n * max_k), 0x3c),
      x(sizeof(__nv_bfloat16) * static_cast<std::size_t>(max_m * max_k), 0x3c),
      y(sizeof(__nv_bfloat16) * static_cast<std::size_t>(max_m * max_n));
  const float alpha = 1, beta = 0;
  for (const auto& shape : shapes)
    for (const std::int64_t m : o.rows) {
      const std::int64_t n = shape.first, k = shape.second;
      auto run = [&] {
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                     static_cast<int>(k), &alpha, w.p, CUDA_R_16BF, static_cast<int>(k), x.p,
                     CUDA_R_16BF, static_cast<int>(k), &beta, y.p, CUDA_R_16BF,
                     static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      };
      CK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                      static_cast<int>(k), &alpha, w.p, CUDA_R_16BF, static_cast<int>(k), x.p,
                      CUDA_R_16BF, static_cast<int>(k), &beta, y.p, CUDA_R_16BF,
                      static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      p.gemm_bf16.push_back({m, n, k, median_s(s, run, 21, 3)});
    }
  // The weight-bound rate: the largest weight at m <= 16, the median of those rows' rates.
  std::pair<std::int64_t, std::int64_t> big{0, 0};
  for (auto sh : shapes)
    if (sh.first * sh.second > big.first * big.second) big = sh;
  std::vector<double> bw;
  for (const auto& g : p.gemm_bf16)
    if (g.n == big.first && g.k == big.second && g.m <= 16)
      bw.push_back(2.0 * static_cast<double>(g.n * g.k + g.m * (g.n + g.k)) / g.seconds / 1e9);
  if (!bw.empty()) {
    std::nth_element(bw.begin(), bw.begin() + static_cast<std::ptrdiff_t>(bw.size() / 2), bw.end());
    p.gemm_memory_GBps = bw[bw.size() / 2];
  }
}

// fp8 e4m3 GEMMs through cuBLASLt: "TN" (A = W transposed), bf16 output, float accumulation.
void measure_gemm_fp8(cudaStream_t s, const CudaProfileOptions& o,
                      const std::vector<std::pair<std::int64_t, std::int64_t>>& shapes,
                      CudaProfile& p) {
  cublasLtHandle_t lt;
  CK(cublasLtCreate(&lt));
  std::unique_ptr<cublasLtContext, void (*)(cublasLtContext*)> guard(lt, [](cublasLtContext* c) { cublasLtDestroy(c); });
  std::int64_t max_n = 0, max_k = 0, max_m = 0;
  for (auto [n, k] : shapes) max_n = std::max(max_n, n), max_k = std::max(max_k, k);
  for (auto m : o.rows) max_m = std::max(max_m, m);
  Buf w(static_cast<std::size_t>(max_n * max_k), 0x30), x(static_cast<std::size_t>(max_m * max_k), 0x30),
      y(sizeof(__nv_bfloat16) * static_cast<std::size_t>(max_m * max_n));
  const std::size_t ws_bytes = std::size_t{32} << 20;
  Buf ws(ws_bytes);
  const float alpha = 1, beta = 0;
  std::vector<std::string> skipped;
  for (const auto& shape : shapes)
    for (const std::int64_t m : o.rows) {
      const std::int64_t n = shape.first, k = shape.second;
      cublasLtMatmulDesc_t desc;
      CK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
      CK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
      cublasLtMatrixLayout_t la, lb, lc;
      CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, static_cast<std::uint64_t>(k), static_cast<std::uint64_t>(n), k));
      CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, static_cast<std::uint64_t>(k), static_cast<std::uint64_t>(m), k));
      CK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(m), n));
      cublasLtMatmulPreference_t pref;
      CK(cublasLtMatmulPreferenceCreate(&pref));
      CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                              &ws_bytes, sizeof ws_bytes));
      cublasLtMatmulHeuristicResult_t heur{};
      int found = 0;
      const cublasStatus_t hs =
          cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &heur, &found);
      if (hs == CUBLAS_STATUS_SUCCESS && found > 0) {
        auto run = [&] {
          cublasLtMatmul(lt, desc, &alpha, w.p, la, x.p, lb, &beta, y.p, lc, y.p, lc, &heur.algo,
                         ws.p, ws_bytes, s);
        };
        CK(cublasLtMatmul(lt, desc, &alpha, w.p, la, x.p, lb, &beta, y.p, lc, y.p, lc, &heur.algo,
                          ws.p, ws_bytes, s));
        p.gemm_fp8.push_back({m, n, k, median_s(s, run, 21, 3)});
      } else {
        skipped.push_back(fmt::format("{}x{}x{}", m, n, k));
      }
      cublasLtMatmulPreferenceDestroy(pref);
      cublasLtMatrixLayoutDestroy(la);
      cublasLtMatrixLayoutDestroy(lb);
      cublasLtMatrixLayoutDestroy(lc);
      cublasLtMatmulDescDestroy(desc);
    }
  if (!skipped.empty())
    p.fp8_note = fmt::format("cuBLASLt offered no fp8 algorithm for {} of the shapes (m x n x k), "
                             "e.g. {}", skipped.size(), skipped.front());
}

void measure_elementwise(cudaStream_t s, CudaProfile& p) {
  {  // fused add + RMSNorm, Llama-3.1-8B's hidden size, 4096 rows
    const std::int64_t rows = 4096, cols = 4096;
    const std::size_t n = static_cast<std::size_t>(rows * cols);
    Buf x(n * 4), r(n * 4), w(static_cast<std::size_t>(cols) * 4), y(n * 4);
    auto run = [&] {
      (void)kernels::add_rmsnorm_cuda(x.as<float>(), r.as<float>(), w.as<float>(), y.as<float>(),
                                      rows, cols, 1e-5f, s);
    };
    CK(kernels::add_rmsnorm_cuda(x.as<float>(), r.as<float>(), w.as<float>(), y.as<float>(), rows,
                                 cols, 1e-5f, s));
    p.rmsnorm_rows = rows;
    p.rmsnorm_cols = cols;
    p.rmsnorm_GBps = 4.0 * static_cast<double>(n) * 4 / median_s(s, run, 21, 3) / 1e9;
  }
  {  // SiLU-and-mul, Llama-3.1-8B's intermediate size, 1024 rows
    const std::int64_t rows = 1024, inter = 14336;
    const std::size_t n = static_cast<std::size_t>(rows * inter);
    Buf gu(2 * n * 4), out(n * 4);
    auto run = [&] { (void)kernels::silu_mul_cuda(gu.as<float>(), out.as<float>(), rows, inter, s); };
    CK(kernels::silu_mul_cuda(gu.as<float>(), out.as<float>(), rows, inter, s));
    p.silu_rows = rows;
    p.silu_inter = inter;
    p.silu_mul_GBps = 3.0 * static_cast<double>(n) * 4 / median_s(s, run, 21, 3) / 1e9;
  }
}

// Paged decode attention: every sequence has `context` tokens cached (the new one included) in
// its own blocks of a bf16 pool; one query row a sequence.
void measure_attention(cudaStream_t s, CudaProfile& p) {
  const std::int64_t qh = p.attention_q_heads, kh = p.attention_kv_heads, d = p.attention_dim;
  const std::int64_t bs = 16;
  const std::vector<std::pair<std::int64_t, std::int64_t>> grid = {
      {1, 512}, {1, 4096}, {16, 512}, {64, 512}, {16, 2048}, {64, 2048}, {256, 2048}};
  for (const auto& point : grid) {
    const std::int64_t seqs = point.first, context = point.second;
    const std::int64_t per_seq = (context + bs - 1) / bs, blocks = seqs * per_seq;
    const std::size_t pool = static_cast<std::size_t>(blocks * kh * bs * d) * sizeof(__nv_bfloat16);
    Buf kp(pool, 0x3c), vp(pool, 0x3c);
    std::vector<std::int32_t> table(static_cast<std::size_t>(blocks)), row0(static_cast<std::size_t>(seqs)),
        newt(static_cast<std::size_t>(seqs), 1), ctx(static_cast<std::size_t>(seqs),
                                                     static_cast<std::int32_t>(context - 1));
    std::vector<std::int64_t> slots(static_cast<std::size_t>(seqs));
    for (std::int64_t j = 0; j < seqs; ++j) {
      row0[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(j);
      for (std::int64_t b = 0; b < per_seq; ++b)
        table[static_cast<std::size_t>(j * per_seq + b)] = static_cast<std::int32_t>(j * per_seq + b);
      const std::int64_t last = context - 1;
      slots[static_cast<std::size_t>(j)] = (j * per_seq + last / bs) * bs + last % bs;
    }
    Buf dtab(table.size() * 4), drow0(row0.size() * 4), dnew(newt.size() * 4), dctx(ctx.size() * 4),
        dslots(slots.size() * 8);
    CK(cudaMemcpy(dtab.p, table.data(), dtab.bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(drow0.p, row0.data(), drow0.bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dnew.p, newt.data(), dnew.bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dctx.p, ctx.data(), dctx.bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dslots.p, slots.data(), dslots.bytes, cudaMemcpyHostToDevice));
    Buf q(static_cast<std::size_t>(seqs * qh * d) * 4), out(static_cast<std::size_t>(seqs * qh * d) * 4);
    kernels::PagedBatch b;
    b.slot_mapping = dslots.as<std::int64_t>();
    b.block_tables = dtab.as<std::int32_t>();
    b.row0 = drow0.as<std::int32_t>();
    b.new_tokens = dnew.as<std::int32_t>();
    b.context = dctx.as<std::int32_t>();
    b.num_seqs = seqs;
    b.rows = seqs;
    b.max_blocks = per_seq;
    b.max_new = 1;
    b.max_context = context;
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    auto run = [&] {
      (void)kernels::paged_attention_cuda(q.as<float>(), kp.p, vp.p, kernels::DType::kBF16, b, qh,
                                          kh, d, bs, scale, out.as<float>(), s);
    };
    CK(kernels::paged_attention_cuda(q.as<float>(), kp.p, vp.p, kernels::DType::kBF16, b, qh, kh, d,
                                     bs, scale, out.as<float>(), s));
    CudaAttentionPoint a;
    a.seqs = seqs;
    a.context = context;
    a.kv_bytes = static_cast<double>(seqs * context * kh * d) * 2 * sizeof(__nv_bfloat16);
    a.seconds = seqs * context < 8192 ? median_each_s(s, run, 20) : median_s(s, run, 21, 3);
    p.attention.push_back(a);
  }
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// NCCL in one process: every visible device (up to max_devices), one communicator each.
void measure_collectives(const CudaProfileOptions& o, CudaProfile& p) {
  const int n = std::min(p.devices, o.max_devices);
  if (!o.collectives) {
    p.collectives_note = "not asked for";
    return;
  }
  if (n < 2) {
    p.collectives_note = fmt::format("{} device visible: no collectives", p.devices);
    return;
  }
  int v = 0;
  CK(ncclGetVersion(&v));
  p.nccl_version = fmt::format("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
  std::vector<ncclComm_t> comms(static_cast<std::size_t>(n));
  std::vector<int> devs(static_cast<std::size_t>(n));
  for (int d = 0; d < n; ++d) devs[static_cast<std::size_t>(d)] = d;
  CK(ncclCommInitAll(comms.data(), n, devs.data()));
  struct Dev {
    cudaStream_t s = nullptr;
    void* buf = nullptr;
  };
  const std::size_t max_bytes = std::size_t{1} << 30;
  std::vector<Dev> dev(static_cast<std::size_t>(n));
  auto cleanup = [&] {
    for (int d = 0; d < n; ++d) {
      cudaSetDevice(d);
      if (dev[static_cast<std::size_t>(d)].buf) cudaFree(dev[static_cast<std::size_t>(d)].buf);
      if (dev[static_cast<std::size_t>(d)].s) cudaStreamDestroy(dev[static_cast<std::size_t>(d)].s);
      ncclCommDestroy(comms[static_cast<std::size_t>(d)]);
    }
    cudaSetDevice(o.device);
  };
  try {
    for (int d = 0; d < n; ++d) {
      CK(cudaSetDevice(d));
      CK(cudaStreamCreateWithFlags(&dev[static_cast<std::size_t>(d)].s, cudaStreamNonBlocking));
      CK(cudaMalloc(&dev[static_cast<std::size_t>(d)].buf, max_bytes));
      CK(cudaMemset(dev[static_cast<std::size_t>(d)].buf, 0, max_bytes));
    }
    auto sync = [&] {
      for (int d = 0; d < n; ++d) {
        CK(cudaSetDevice(d));
        CK(cudaStreamSynchronize(dev[static_cast<std::size_t>(d)].s));
      }
    };
    // The median over 5 trials of (host time of `calls` calls, then every stream drained) / calls.
    auto timed = [&](auto&& f, std::size_t bytes) {
      const int calls = static_cast<int>(std::clamp<std::size_t>((std::size_t{1} << 28) / (bytes + 65536), 5, 200));
      for (int w = 0; w < 5; ++w) f();
      sync();
      std::vector<double> t;
      for (int r = 0; r < 5; ++r) {
        const double t0 = now_s();
        for (int c = 0; c < calls; ++c) f();
        sync();
        t.push_back((now_s() - t0) / calls);
      }
      std::sort(t.begin(), t.end());
      return t[2];
    };
    for (std::size_t bytes = 1024; bytes <= max_bytes; bytes *= 4) {
      const std::size_t count = bytes / 4;
      auto all_reduce = [&] {
        CK(ncclGroupStart());
        for (int d = 0; d < n; ++d)
          CK(ncclAllReduce(dev[static_cast<std::size_t>(d)].buf, dev[static_cast<std::size_t>(d)].buf,
                           count, ncclFloat, ncclSum, comms[static_cast<std::size_t>(d)],
                           dev[static_cast<std::size_t>(d)].s));
        CK(ncclGroupEnd());
      };
      const double t = timed(all_reduce, bytes);
      p.all_reduce.push_back(
          collective_point(static_cast<std::int64_t>(bytes), t, 2.0 * (n - 1) / n));
    }
    for (std::size_t bytes = 1024; bytes <= max_bytes; bytes *= 4) {
      const std::size_t count = bytes / 4;
      auto send_recv = [&] {  // device 0 to device 1, one way
        CK(ncclGroupStart());
        CK(ncclSend(dev[0].buf, count, ncclFloat, 1, comms[0], dev[0].s));
        CK(ncclRecv(dev[1].buf, count, ncclFloat, 0, comms[1], dev[1].s));
        CK(ncclGroupEnd());
      };
      const double t = timed(send_recv, bytes);
      p.send_recv.push_back(collective_point(static_cast<std::int64_t>(bytes), t, 1.0));
    }
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
  p.collective_ranks = n;
}

}  // namespace

namespace {

// The visible device count, or why there is no device `device`.
Expected<int> visible(int device) {
  int count = 0;
  const cudaError_t ce = cudaGetDeviceCount(&count);
  if (ce != cudaSuccess || count == 0)
    return make_error("", 0, 0,
                      ce != cudaSuccess
                          ? fmt::format("no CUDA device (cudaGetDeviceCount: {})",
                                        cudaGetErrorString(ce))
                          : std::string("no CUDA device visible"));
  if (device < 0 || device >= count)
    return make_error("", 0, 0, fmt::format("device {} is not among the {} visible", device, count));
  return count;
}

}  // namespace

Expected<std::string> cuda_device_name(int device) {
  auto n = visible(device);
  if (!n) return n.error();
  cudaDeviceProp prop;
  const cudaError_t e = cudaGetDeviceProperties(&prop, device);
  if (e != cudaSuccess)
    return make_error("", 0, 0, fmt::format("cudaGetDeviceProperties failed: {}", cudaGetErrorString(e)));
  return std::string(prop.name);
}

Expected<CudaProfile> profile_cuda(const CudaProfileOptions& o) {
  CudaProfile p;
  auto visible_count = visible(o.device);
  if (!visible_count) return visible_count.error();
  const int count = *visible_count;
  try {
    p.devices = count;
    CK(cudaSetDevice(o.device));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, o.device));
    p.device_name = prop.name;
    p.sm_count = prop.multiProcessorCount;
    p.compute_capability = prop.major + prop.minor / 10.0;
    std::size_t free_b = 0, total_b = 0;
    CK(cudaMemGetInfo(&free_b, &total_b));
    p.memory_total_GiB = static_cast<double>(total_b) / 1073741824.0;
    CK(cudaDriverGetVersion(&p.driver_version));
    CK(cudaRuntimeGetVersion(&p.runtime_version));
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    std::unique_ptr<CUstream_st, void (*)(CUstream_st*)> sg(s, [](CUstream_st* x) { cudaStreamDestroy(x); });
    auto shapes = o.shapes;
    if (shapes.empty()) shapes = {{8192, 8192}};
    if (p.gemm_shapes.empty())
      p.gemm_shapes = o.shapes.empty() ? "[m x 8192] x [8192 x 8192]"
                                       : fmt::format("{} weight shapes", shapes.size());
    measure_launch(s, p);
    measure_memory(s, prop, p);
    measure_gemm_bf16(s, o, shapes, p);
    if (!o.fp8)
      p.fp8_note = "not asked for";
    else if (prop.major * 10 + prop.minor < 89)
      p.fp8_note = fmt::format("sm_{}{} has no fp8 tensor cores (sm_89 and later do)", prop.major,
                               prop.minor);
    else
      measure_gemm_fp8(s, o, shapes, p);
    measure_elementwise(s, p);
    measure_attention(s, p);
    CK(cudaStreamSynchronize(s));
    measure_collectives(o, p);
  } catch (const Failure& f) {
    return make_error("", 0, 0, f.message);
  }
  return p;
}

}  // namespace tpp::exec
