// The GPU backend: cuBLAS / cuBLASLt GEMMs, the CUDA kernels of kernels/cuda_ops.h, CUDA graphs
// for decode steps, one stream. Collectives are the Comm's (executor/nccl_comm.cc), issued on
// this backend's stream (cuda_backend_stream() below) so that graphs capture them too.
//
// Memory.
//   Weights and the KV pool are one cudaMalloc each, made by reserve() (plus a little slack
//   for the 256-byte alignment of every buffer), sub-allocated by alloc_weight / alloc_kv.
//   Should a caller take more than it reserved, the pool grows by another allocation (never
//   moving what was handed out). Never managed memory.
//   A weight or KV pointer handed out is a HANDLE, not an address: `handle + i` denotes
//   element i of the buffer whatever the element type (bf16: 2 bytes, fp8: 1). Handles live
//   in a fake address range of their own (weights from kWeightBase, KV from kKvBase: above any
//   user-space address, so a handle is never mistaken for a real pointer and is never
//   dereferenced), four bytes per element:
//       handle(e) = base + 4 e        element index e = (handle - base) / 4
//       address   = segment.real + (e - segment.first) x element bytes
//   Pool::translate is the only place this arithmetic is done.
//   Activations (alloc) are float32 cudaMallocs of their own.
//
// GEMMs. y[m,n] = x[m,k] . w[n,k]^T is computed column-major as y^T[n,m] = w[n,k] . x^T[k,m]:
//   A = w (stored k x n column-major, lda k, op T), B = x (k x m, ldb k, op N), C = y (n x m,
//   ldc n). bf16 weights: x converted to bf16, cublasGemmEx bf16 x bf16 -> f32 with f32
//   compute. fp8 weights on sm_89+ (Hopper, Ada): x quantised to e4m3 with a dynamic
//   per-tensor scale (absmax / 448, vLLM's dynamic activation scale), cublasLtMatmul e4m3 x
//   e4m3 -> f32 with the activation scale through CUBLASLT_MATMUL_DESC_B_SCALE_POINTER and the
//   weight's per-buffer scale folded into alpha; when cuBLASLt has no algorithm for the shape
//   (or the shape breaks fp8's alignment rules), and on Ampere, weight-only fp8: the weight is
//   dequantised to bf16 (in slices of bounded size) and multiplied in bf16.
//   fp8 scales: one per weight buffer (a map from buffer start to its scale): a seeded shard's
//   is its uniform bound / 448; an upload's is its max |value| / 448. A later write into the
//   same buffer that needs a larger scale requantises what the buffer holds to that scale.
//
// Steps and CUDA graphs. begin_step uploads the step's tokens, positions, slots, sequences,
// block tables and sample rows with one copy from one pinned buffer into one device buffer at
// offsets that depend only on the (padded) sizes, so that a graph replayed for the same size
// reads the new step's values. A decode-only step of at most 512 rows with graphs on (no
// --enforce-eager) is padded to vLLM's capture size at or above it ([1, 2, 4] + 8, 16, ...,
// 512): padding rows have token 0, position 0 and slot -1 (no KV write), padding sequences one
// new token, context 0, row0 their row and a block table of block 0; their block tables have a
// fixed width (a power of two, grown as contexts grow) and the attention kernels are told an
// upper bound of the context (width x block size), as vLLM captures with its largest context.
//   A size is captured the SECOND time an eligible step of that size is seen: the first runs
//   eagerly, so that every scratch buffer has grown to what the size needs before a capture
//   refers to it, and so that a model with MoE has shown it (moe() needs the experts' counts
//   on the host, a synchronisation, so a backend that has seen moe() never captures). Any
//   buffer a graph refers to that is reallocated (a scratch grown by a larger step, a wider
//   block table) bumps a generation counter: graphs of an older generation are dropped and
//   captured again. One graph per capture size.
//
// Errors. Operators return nothing: the first error (file:line, the call, and CUDA's,
// cuBLAS's or the kernel's message) is kept, nothing more is issued, and the next sync(),
// download(), argmax(), begin_step() or capture_end() prints it once as
// "tpp-run: error: rank R: <message>" and ends the job through Comm::abort (NCCL's aborts its
// communicators before MPI_Abort), so that no other rank waits forever. Waiting on the stream
// also polls NCCL's asynchronous errors.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "executor/backend.h"

namespace tpp::exec {

// The stream of the most recently created CUDA backend of this process (one per rank), for the
// NCCL communicator (executor/nccl_comm.cc declares the same function).
cudaStream_t cuda_backend_stream();
// An asynchronous NCCL error of this process's communicators as one line, or empty (defined in
// executor/nccl_comm.cc).
std::string nccl_async_error();

namespace {

using kernels::bf16_t;
using kernels::DType;
using kernels::fp8_t;
using kernels::KernelStatus;

std::atomic<cudaStream_t> g_stream{nullptr};

constexpr float kFp8Max = 448.0f;                            // e4m3's largest finite value
constexpr std::uintptr_t kWeightBase = 0x4000000000000000ull;  // fake address ranges
constexpr std::uintptr_t kKvBase = 0x5000000000000000ull;
constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;   // cuBLAS / cuBLASLt workspace
constexpr std::size_t kStageElems = std::size_t{16} << 20;       // host <-> device conversions
constexpr std::int64_t kDequantElems = std::int64_t{32} << 20;   // weight-only fp8 slice
constexpr std::int64_t kMaxCaptureRows = 512;                    // vLLM's largest capture size
constexpr std::size_t kMaxLtPlans = 4096;

std::string where(const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line);
}
std::size_t round_up(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }
bool fits_int(std::int64_t v) { return v >= 0 && v <= INT_MAX; }

// vLLM's cudagraph_capture_sizes default: [1, 2, 4] + list(range(8, 513, 8)).
std::int64_t capture_size(std::int64_t rows) {
  if (rows <= 1) return 1;
  if (rows <= 2) return 2;
  if (rows <= 4) return 4;
  return (rows + 7) / 8 * 8;
}

// ---- Weight and KV pools: real allocations behind handles -----------------------------------

class Pool {
 public:
  struct Buffer {
    std::size_t n = 0;     // elements
    float scale = 1.0f;    // fp8: real value = stored value x scale
    bool scaled = false;   // scale chosen (by the first write)
  };
  // A translated handle: the real address of the element, and the buffer holding it.
  struct Ref {
    char* real = nullptr;
    Buffer* buf = nullptr;
    std::size_t first = 0;  // the buffer's first element
    std::size_t off = 0;    // the handle's element
  };

  Pool(std::uintptr_t base, int elem_bytes) : base_(base), eb_(elem_bytes) {}
  ~Pool() {
    for (auto& s : segs_) cudaFree(s.real);
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int elem_bytes() const { return eb_; }
  bool contains(const void* p) const {
    const auto u = reinterpret_cast<std::uintptr_t>(p);
    return !segs_.empty() && u >= base_ && u < base_ + segs_.back().end * sizeof(float);
  }
  // Elements free at the end of the last segment.
  std::size_t room() const {
    if (segs_.empty()) return 0;
    const std::size_t at = round_up(next_, align());
    return at < segs_.back().end ? segs_.back().end - at : 0;
  }
  // One more real allocation of `elems` elements, after the last in the fake range.
  cudaError_t add_segment(std::size_t elems) {
    const std::size_t first = round_up(segs_.empty() ? 0 : segs_.back().end, align());
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, std::max<std::size_t>(elems, 1) * eb_);
    if (e != cudaSuccess) return e;
    segs_.push_back({first, first + std::max<std::size_t>(elems, 1), static_cast<char*>(p)});
    next_ = first;
    return cudaSuccess;
  }
  // A buffer of n elements from the last segment (room() >= n), 256-byte aligned.
  float* take(std::size_t n) {
    n = std::max<std::size_t>(n, 1);
    const std::size_t at = round_up(next_, align());
    next_ = at + n;
    bufs_[at] = Buffer{n};
    return reinterpret_cast<float*>(base_ + at * sizeof(float));
  }
  // THE handle translation: handle -> element index -> segment -> real address, and the
  // buffer holding elements [e, e + n). False when the handle is not one of this pool's or the
  // range leaves its buffer.
  bool translate(const void* handle, std::size_t n, Ref& r) {
    const auto u = reinterpret_cast<std::uintptr_t>(handle);
    if (!contains(handle) || (u - base_) % sizeof(float) != 0) return false;
    const std::size_t e = (u - base_) / sizeof(float);
    auto it = bufs_.upper_bound(e);
    if (it == bufs_.begin()) return false;
    --it;
    if (e + n > it->first + it->second.n) return false;
    for (const auto& s : segs_)
      if (e >= s.first && e < s.end) {
        r.real = s.real + (e - s.first) * static_cast<std::size_t>(eb_);
        r.buf = &it->second;
        r.first = it->first;
        r.off = e;
        return true;
      }
    return false;
  }
  // The real address of a buffer's first element (for requantising a whole buffer).
  char* real_of(std::size_t first) const {
    for (const auto& s : segs_)
      if (first >= s.first && first < s.end)
        return s.real + (first - s.first) * static_cast<std::size_t>(eb_);
    return nullptr;
  }

 private:
  struct Segment {
    std::size_t first = 0, end = 0;  // element range in the fake address space
    char* real = nullptr;
  };
  std::size_t align() const { return 256 / static_cast<std::size_t>(eb_); }

  std::uintptr_t base_;
  int eb_;
  std::vector<Segment> segs_;
  std::size_t next_ = 0;
  std::map<std::size_t, Buffer> bufs_;  // first element -> buffer
};

// Device scratch that only grows.
struct Scratch {
  void* p = nullptr;
  std::size_t bytes = 0;
};

// Inside CudaBackend: a CUDA, cuBLAS or kernel status checked, the first failure kept (with the
// call, file:line and the library's message); true when it succeeded.
#define TPP_OK(call) ok((call), #call, __FILE__, __LINE__)

class CudaBackend final : public Backend {
 public:
  CudaBackend(Comm& c, const CudaOptions& o, int device, const cudaDeviceProp& prop)
      : Backend(c),
        o_(o),
        device_(device),
        fp8_tensor_cores_(prop.major * 10 + prop.minor >= 89),
        weights_(kWeightBase, kernels::dtype_bytes(o.weights)),
        kv_(kKvBase, kernels::dtype_bytes(o.kv)) {}

  ~CudaBackend() override {
    if (stream_) {
      if (capturing_) {
        cudaGraph_t g = nullptr;
        cudaStreamEndCapture(stream_, &g);
        if (g) cudaGraphDestroy(g);
      }
      cudaStreamSynchronize(stream_);
    }
    for (auto& [size, g] : graphs_) cudaGraphExecDestroy(g.exec);
    clear_lt_plans();
    if (lt_) cublasLtDestroy(lt_);
    if (blas_) cublasDestroy(blas_);
    for (Scratch* s : all_scratch()) cudaFree(s->p);
    for (auto& [key, t] : ropes_) cudaFree(t.dev);
    for (void* p : activations_) cudaFree(p);
    if (meta_host_) cudaFreeHost(meta_host_);
    if (pinned_) cudaFreeHost(pinned_);
    if (meta_event_) cudaEventDestroy(meta_event_);
    cudaFree(workspace_);
    cudaFree(small_);
    cudaStream_t mine = stream_;
    g_stream.compare_exchange_strong(mine, nullptr);
    if (stream_) cudaStreamDestroy(stream_);
  }

  bool init(std::string& why) {
    const auto step = [&](bool good) {
      if (!good) why = error_;
      return good;
    };
    if (!step(TPP_OK(cudaSetDevice(device_)))) return false;
    if (!step(TPP_OK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)))) return false;
    if (!step(TPP_OK(cudaEventCreateWithFlags(&meta_event_, cudaEventDisableTiming)))) return false;
    if (!step(TPP_OK(cudaMalloc(&workspace_, kWorkspaceBytes)))) return false;
    if (!step(TPP_OK(cudaMalloc(&small_, 256)))) return false;
    amax_ = static_cast<float*>(small_);
    xscale_ = amax_ + 1;
    if (!step(TPP_OK(cublasCreate(&blas_)))) return false;
    if (!step(TPP_OK(cublasSetStream(blas_, stream_)))) return false;
    // A workspace of our own: cuBLAS allocates none while a graph is being captured.
    if (!step(TPP_OK(cublasSetWorkspace(blas_, workspace_, kWorkspaceBytes)))) return false;
    if (!step(TPP_OK(cublasLtCreate(&lt_)))) return false;
    // The attention kernels' split workspaces come from cudaMallocAsync every step: keep the
    // device pool's memory across synchronisations rather than returning it to the OS each time.
    cudaMemPool_t pool = nullptr;
    if (cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess && pool) {
      std::uint64_t keep = UINT64_MAX;
      (void)cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    (void)cudaGetLastError();
    g_stream.store(stream_);
    return true;
  }

  std::string name() const override { return "cuda"; }

  // ---- Memory --------------------------------------------------------------------------------

  void reserve(std::size_t weight_elems, std::size_t kv_elems) override {
    // Slack for the 256-byte alignment of each buffer (65536 buffers of weights, 4096 of KV).
    if (weight_elems > 0 && weights_.room() < weight_elems)
      grow_pool(weights_, weight_elems + (std::size_t{16} << 20) / weights_.elem_bytes(),
                "weights");
    if (kv_elems > 0 && kv_.room() < kv_elems)
      grow_pool(kv_, kv_elems + (std::size_t{1} << 20) / kv_.elem_bytes(), "the KV pool");
    check();
  }
  float* alloc(std::size_t n) override {
    void* p = nullptr;
    if (!TPP_OK(cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(float)))) check();
    activations_.push_back(p);
    ++gen_;  // a caller that allocates anew (the decoder growing its activations) has left the
             // buffers captured graphs hold
    return static_cast<float*>(p);
  }
  float* alloc_weight(std::size_t n) override { return take(weights_, n, "weights"); }
  float* alloc_kv(std::size_t n) override { return take(kv_, n, "the KV pool"); }
  int weight_bytes() const override { return weights_.elem_bytes(); }
  int kv_bytes() const override { return kv_.elem_bytes(); }

  // float32 host values into a buffer: a handle's buffer is converted to its type (the pointer
  // says which; `weight` is the caller's word for the same).
  void upload(float* dst, const float* host, std::size_t n, bool weight) override {
    (void)weight;
    if (!live() || n == 0) return check();
    if (!not_capturing("upload")) return check();
    Pool::Ref r;
    Pool* pool = pool_of(dst);
    if (!pool) {
      TPP_OK(cudaMemcpyAsync(dst, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
      return check();
    }
    if (!pool->translate(dst, n, r)) return bad_handle("upload", dst, n), check();
    const DType t = pool == &weights_ ? o_.weights : o_.kv;
    float scale = 1.0f;
    if (t == DType::kFP8 && pool == &weights_) {
      float amax = 0.0f;
      for (std::size_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(host[i]));
      scale = buffer_scale(*pool, r, amax > 0.0f && std::isfinite(amax) ? amax / kFp8Max : 0.0f);
    }
    for (std::size_t i = 0; i < n && live(); i += kStageElems) {
      const std::size_t c = std::min(kStageElems, n - i);
      auto* stage = static_cast<float*>(scratch(stage_, c * sizeof(float)));
      if (!stage) break;
      if (!TPP_OK(cudaMemcpyAsync(stage, host + i, c * sizeof(float), cudaMemcpyHostToDevice,
                                  stream_)))
        break;
      convert_from_f32(stage, r.real + i * pool->elem_bytes(), t, c, scale);
    }
    check();
  }

  void download(float* host, const float* src, std::size_t n, bool weight) override {
    (void)weight;
    if (!live() || n == 0) return check();
    if (!not_capturing("download")) return check();
    Pool* pool = pool_of(src);
    if (!pool) {
      TPP_OK(cudaMemcpyAsync(host, src, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
      wait_stream();
      return check();
    }
    Pool::Ref r;
    if (!pool->translate(src, n, r)) return bad_handle("download", src, n), check();
    const DType t = pool == &weights_ ? o_.weights : o_.kv;
    const float scale = pool == &weights_ ? r.buf->scale : 1.0f;
    for (std::size_t i = 0; i < n && live(); i += kStageElems) {
      const std::size_t c = std::min(kStageElems, n - i);
      auto* stage = static_cast<float*>(scratch(stage_, c * sizeof(float)));
      if (!stage) break;
      convert_to_f32(r.real + i * pool->elem_bytes(), t, stage, c, scale);
      if (!TPP_OK(cudaMemcpyAsync(host + i, stage, c * sizeof(float), cudaMemcpyDeviceToHost,
                                  stream_)))
        break;
      wait_stream();
    }
    wait_stream();
    check();
  }

  bool seed(float* dst, const kernels::SeedShard& s, bool weight) override {
    (void)weight;
    if (!live()) return check(), true;
    if (!not_capturing("seed")) return check(), true;
    const auto n = static_cast<std::size_t>(s.count * s.rows * s.cols);
    if (n == 0) return true;
    Pool* pool = pool_of(dst);
    if (!pool) {
      TPP_OK(kernels::seeded_fill_cuda(s, DType::kF32, dst, 1.0f, stream_));
      return check(), true;
    }
    Pool::Ref r;
    if (!pool->translate(dst, n, r)) return bad_handle("seed", dst, n), check(), true;
    const DType t = pool == &weights_ ? o_.weights : o_.kv;
    float scale = 1.0f;
    if (t == DType::kFP8 && pool == &weights_)
      scale = buffer_scale(*pool, r, (s.ones ? 1.0f : s.scale) / kFp8Max);
    if (live()) TPP_OK(kernels::seeded_fill_cuda(s, t, r.real, scale, stream_));
    check();
    return true;
  }

  void copy2d(float* dst, std::int64_t dst_ld, const float* src, std::int64_t src_ld,
              std::int64_t rows, std::int64_t cols) override {
    if (!live() || rows <= 0 || cols <= 0) return;
    if (!is_f32(dst, "copy2d") || !is_f32(src, "copy2d")) return;
    const auto fb = sizeof(float);
    if (rows == 1 || (dst_ld == cols && src_ld == cols)) {  // contiguous: one plain copy (and
      // no pitch limit: the ReplayComm mover copies whole all-reduce buffers as one row)
      TPP_OK(cudaMemcpyAsync(dst, src, static_cast<std::size_t>(rows * cols) * fb,
                             cudaMemcpyDeviceToDevice, stream_));
      return;
    }
    TPP_OK(cudaMemcpy2DAsync(dst, static_cast<std::size_t>(dst_ld) * fb, src,
                             static_cast<std::size_t>(src_ld) * fb,
                             static_cast<std::size_t>(cols) * fb, static_cast<std::size_t>(rows),
                             cudaMemcpyDeviceToDevice, stream_));
  }

  void fill(float* dst, float value, std::size_t n) override {
    if (!live() || n == 0) return;
    Pool* pool = pool_of(dst);
    if (pool) {  // a pool's zero is all zero bits in every type
      Pool::Ref r;
      if (!pool->translate(dst, n, r)) return bad_handle("fill", dst, n);
      if (value != 0.0f) return fail("fill: a weight or KV buffer can only be filled with 0");
      TPP_OK(cudaMemsetAsync(r.real, 0, n * pool->elem_bytes(), stream_));
      return;
    }
    if (value == 0.0f && !std::signbit(value)) {
      TPP_OK(cudaMemsetAsync(dst, 0, n * sizeof(float), stream_));
      return;
    }
    const auto count = static_cast<std::int64_t>(n);
    TPP_OK(kernels::fill_cuda(dst, count, value, stream_));
  }

  void sync() override {
    if (capturing_) return;  // host code must not wait inside a capture (backend.h)
    wait_stream();
    check();
  }

  // ---- A step --------------------------------------------------------------------------------

  std::int64_t begin_step(const StepMeta& m) override {
    check();
    if (capturing_) {
      fail("begin_step while a CUDA graph is being captured");
      check();
    }
    const std::int64_t R = std::max<std::int64_t>(m.rows, 0);
    const auto S = static_cast<std::int64_t>(m.seqs.size());
    eligible_ = !o_.enforce_eager && !seen_moe_ && R > 0 && R <= kMaxCaptureRows && S == R &&
                m.decode_only();
    const std::int64_t P = eligible_ ? capture_size(R) : R;  // rows the layers run on
    const std::int64_t SP = eligible_ ? P : S;                // sequences, with padding
    block_size_ = m.block_size;
    std::int64_t width = std::max<std::int64_t>(m.max_blocks, 1);
    if (eligible_) {  // a fixed width for graphs: a power of two, grown as contexts grow
      if (width > graph_width_) {
        std::int64_t w = 16;
        while (w < width) w *= 2;
        graph_width_ = w;
        ++gen_;  // captured graphs hold the old width
      }
      width = graph_width_;
    }
    const auto NS = static_cast<std::int64_t>(m.sample_rows.size());

    // The layout: offsets depend only on (P, SP, width), so a size's graph finds its arrays.
    std::size_t at = 0;
    const auto place = [&](std::size_t bytes) {
      const std::size_t o = at;
      at = round_up(at + bytes, 16);
      return o;
    };
    const auto up = [](std::int64_t v) {
      return static_cast<std::size_t>(std::max<std::int64_t>(v, 1));
    };
    const std::size_t o_tok = place(up(P) * 8), o_pos = place(up(P) * 8), o_slot = place(up(P) * 8);
    const std::size_t o_row0 = place(up(SP) * 4), o_new = place(up(SP) * 4),
                      o_ctx = place(up(SP) * 4);
    const std::size_t o_bt = place(up(SP) * static_cast<std::size_t>(width) * 4);
    const std::size_t o_smp = place(up(NS) * 4);
    const std::size_t total = at;

    // The previous step's copy must be done with the pinned buffer before it is rewritten.
    if (meta_pending_) {
      TPP_OK(cudaEventSynchronize(meta_event_));
      meta_pending_ = false;
    }
    if (!live()) check();
    if (total > meta_host_bytes_) {
      const std::size_t bytes = std::max(total, 2 * meta_host_bytes_);
      if (meta_host_) cudaFreeHost(meta_host_);
      meta_host_ = nullptr;
      meta_host_bytes_ = 0;
      if (!TPP_OK(cudaHostAlloc(&meta_host_, bytes, cudaHostAllocDefault))) check();
      meta_host_bytes_ = bytes;
    }
    auto* meta_dev = static_cast<char*>(scratch(meta_, total));
    if (!meta_dev) check();

    char* h = static_cast<char*>(meta_host_);
    auto* tok = reinterpret_cast<std::int64_t*>(h + o_tok);
    auto* pos = reinterpret_cast<std::int64_t*>(h + o_pos);
    auto* slot = reinterpret_cast<std::int64_t*>(h + o_slot);
    auto* row0 = reinterpret_cast<std::int32_t*>(h + o_row0);
    auto* nnew = reinterpret_cast<std::int32_t*>(h + o_new);
    auto* ctx = reinterpret_cast<std::int32_t*>(h + o_ctx);
    auto* bt = reinterpret_cast<std::int32_t*>(h + o_bt);
    auto* smp = reinterpret_cast<std::int32_t*>(h + o_smp);
    const auto get = [](const std::vector<std::int64_t>& v, std::int64_t i, std::int64_t dflt) {
      return i < static_cast<std::int64_t>(v.size()) ? v[static_cast<std::size_t>(i)] : dflt;
    };
    for (std::int64_t i = 0; i < P; ++i) {
      const bool real = i < R;
      tok[i] = real ? get(m.tokens, i, 0) : 0;
      pos[i] = real ? get(m.positions, i, 0) : 0;
      slot[i] = real ? get(m.slots, i, -1) : -1;
    }
    std::memset(bt, 0, static_cast<std::size_t>(std::max<std::int64_t>(SP, 1) * width) * 4);
    std::int64_t max_new = 0, max_context = 0;
    for (std::int64_t j = 0; j < SP; ++j) {
      if (j < S) {
        const kernels::PagedSeq& q = m.seqs[static_cast<std::size_t>(j)];
        row0[j] = static_cast<std::int32_t>(q.row0);
        nnew[j] = static_cast<std::int32_t>(q.new_tokens);
        ctx[j] = static_cast<std::int32_t>(q.context);
        max_new = std::max(max_new, q.new_tokens);
        max_context = std::max(max_context, q.context + q.new_tokens);
        std::int64_t nb = m.max_blocks;  // the blocks the sequence's positions occupy
        if (m.block_size > 0)
          nb = std::min(nb, (q.context + q.new_tokens + m.block_size - 1) / m.block_size);
        nb = std::min(nb, width);
        if (q.block_table && nb > 0)
          std::memcpy(bt + j * width, q.block_table, static_cast<std::size_t>(nb) * 4);
      } else {  // padding: one token at context 0 in block 0, no KV written (slot -1)
        row0[j] = static_cast<std::int32_t>(j);
        nnew[j] = 1;
        ctx[j] = 0;
        max_new = std::max<std::int64_t>(max_new, 1);
        max_context = std::max<std::int64_t>(max_context, 1);
      }
    }
    for (std::int64_t i = 0; i < NS; ++i) smp[i] = m.sample_rows[static_cast<std::size_t>(i)];

    if (live() && TPP_OK(cudaMemcpyAsync(meta_dev, meta_host_, total, cudaMemcpyHostToDevice,
                                         stream_)) &&
        TPP_OK(cudaEventRecord(meta_event_, stream_)))
      meta_pending_ = true;
    check();

    tokens_ = reinterpret_cast<const std::int64_t*>(meta_dev + o_tok);
    positions_ = reinterpret_cast<const std::int64_t*>(meta_dev + o_pos);
    samples_ = reinterpret_cast<const std::int32_t*>(meta_dev + o_smp);
    pb_ = kernels::PagedBatch{};
    pb_.slot_mapping = reinterpret_cast<const std::int64_t*>(meta_dev + o_slot);
    pb_.block_tables = reinterpret_cast<const std::int32_t*>(meta_dev + o_bt);
    pb_.row0 = reinterpret_cast<const std::int32_t*>(meta_dev + o_row0);
    pb_.new_tokens = reinterpret_cast<const std::int32_t*>(meta_dev + o_new);
    pb_.context = reinterpret_cast<const std::int32_t*>(meta_dev + o_ctx);
    pb_.num_seqs = SP;
    pb_.rows = P;
    pb_.max_blocks = width;
    pb_.max_new = max_new;
    // A graph serves every context up to its table's width: it is told that bound.
    pb_.max_context = eligible_ && m.block_size > 0 ? width * m.block_size : max_context;
    rows_ = P;
    num_samples_ = NS;
    if (eligible_) ++seen_[P];
    return P;
  }

  bool replay_layers() override {
    if (!live() || !eligible_ || seen_moe_ || capturing_) return false;
    auto it = graphs_.find(rows_);
    if (it == graphs_.end()) return false;
    if (it->second.gen != gen_) {  // refers to buffers since reallocated
      cudaGraphExecDestroy(it->second.exec);
      graphs_.erase(it);
      return false;
    }
    TPP_OK(cudaGraphLaunch(it->second.exec, stream_));
    return true;  // on failure the error is kept: the next sync ends the job
  }

  void capture_begin() override {
    if (!live() || capturing_ || !eligible_ || seen_moe_) return;
    if (graphs_.count(rows_)) return;        // replay_layers had it (or it was just dropped)
    if (seen_[rows_] < 2) return;            // the first step of a size runs eagerly
    if (TPP_OK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal))) {
      capturing_ = true;
      capture_gen_ = gen_;
    }
  }

  void capture_end() override {
    if (!capturing_) return check();
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    const cudaError_t e = cudaStreamEndCapture(stream_, &graph);
    if (live()) TPP_OK(e);
    if (live() && gen_ != capture_gen_)
      fail("a buffer was reallocated while a CUDA graph of " + std::to_string(rows_) +
           " rows was being captured");
    cudaGraphExec_t exec = nullptr;
    if (live() && graph) TPP_OK(cudaGraphInstantiate(&exec, graph, 0));
    if (graph) cudaGraphDestroy(graph);
    if (!live()) {
      if (exec) cudaGraphExecDestroy(exec);
      return check();
    }
    if (!exec) return fail("cudaStreamEndCapture gave no graph"), check();
    auto it = graphs_.find(rows_);
    if (it != graphs_.end()) cudaGraphExecDestroy(it->second.exec);
    graphs_[rows_] = Graph{exec, gen_};
    TPP_OK(cudaGraphLaunch(exec, stream_));  // the step still runs
    check();
  }

  bool capturing() const override { return capturing_; }

  // ---- Operators -----------------------------------------------------------------------------

  void gemm(const float* x, const float* w, float* y, std::int64_t m, std::int64_t n,
            std::int64_t k, bool accumulate) override {
    if (!live() || m <= 0 || n <= 0) return;
    if (k <= 0) {
      if (!accumulate) fill(y, 0.0f, static_cast<std::size_t>(m * n));
      return;
    }
    if (!fits_int(m) || !fits_int(n) || !fits_int(k))
      return fail("gemm: " + std::to_string(m) + " x " + std::to_string(n) + " x " +
                  std::to_string(k) + " exceeds cuBLAS's int dimensions");
    if (!is_f32(y, "gemm output")) return;
    const float* xf = as_f32(x, static_cast<std::size_t>(m * k));
    WeightRef wr;
    if (!xf || !weight_ref(w, static_cast<std::size_t>(n * k), "gemm", wr)) return;
    const float beta = accumulate ? 1.0f : 0.0f;
    const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
    switch (wr.type) {
      case DType::kF32:
        gemm_ex(CUDA_R_32F, wr.real, 0, xf, K, 0, y, N, 0, M, N, K, 1.0f, beta, 1);
        return;
      case DType::kBF16: {
        const bf16_t* xb = to_bf16(xf, m * k);
        if (xb) gemm_ex(CUDA_R_16BF, wr.real, 0, xb, K, 0, y, N, 0, M, N, K, 1.0f, beta, 1);
        return;
      }
      case DType::kFP8: {
        if (fp8_tensor_cores_ && gemm_fp8(xf, wr, y, M, N, K, beta)) return;
        if (!live()) return;
        // Weight-only fp8 (Ampere, or a shape cuBLASLt's fp8 kernels refuse): the weight
        // dequantised to bf16 a slice of rows at a time, y's columns of that slice.
        const bf16_t* xb = to_bf16(xf, m * k);
        if (!xb) return;
        const std::int64_t per = std::max<std::int64_t>(1, kDequantElems / k);
        for (std::int64_t n0 = 0; n0 < n && live(); n0 += per) {
          const std::int64_t nc = std::min(per, n - n0);
          auto* wd = static_cast<bf16_t*>(scratch(wdq_, static_cast<std::size_t>(nc * k) * 2));
          if (!wd) return;
          const auto* w8 = reinterpret_cast<const fp8_t*>(wr.real) + n0 * k;
          if (!TPP_OK(kernels::fp8_to_bf16_cuda(w8, wd, nc * k, wr.scale, stream_))) return;
          gemm_ex(CUDA_R_16BF, wd, 0, xb, K, 0, y + n0, N, 0, M, static_cast<int>(nc), K, 1.0f,
                  beta, 1);
        }
        return;
      }
    }
  }

  void gemm_batched(const float* x, std::int64_t ldx, std::int64_t sx, const float* w,
                    std::int64_t sw, float* y, std::int64_t ldy, std::int64_t sy, std::int64_t m,
                    std::int64_t n, std::int64_t k, std::int64_t batch) override {
    if (!live() || m <= 0 || n <= 0 || batch <= 0) return;
    if (ldx < k || ldy < n || sx < 0 || sw < 0 || sy < 0)
      return fail("gemm_batched: strides ldx " + std::to_string(ldx) + ", ldy " +
                  std::to_string(ldy) + " below k " + std::to_string(k) + ", n " +
                  std::to_string(n) + ", or a negative batch stride");
    if (!is_f32(y, "gemm_batched output")) return;
    if (k <= 0) {
      for (std::int64_t b = 0; b < batch && live(); ++b)
        TPP_OK(cudaMemset2DAsync(y + b * sy, static_cast<std::size_t>(ldy) * 4, 0,
                                 static_cast<std::size_t>(n) * 4, static_cast<std::size_t>(m),
                                 stream_));
      return;
    }
    if (!fits_int(m) || !fits_int(n) || !fits_int(k) || !fits_int(ldx) || !fits_int(ldy) ||
        !fits_int(batch))
      return fail("gemm_batched: dimensions exceed cuBLAS's int");
    const std::int64_t span_x = (batch - 1) * sx + (m - 1) * ldx + k;
    const std::int64_t span_w = (batch - 1) * sw + n * k;
    const float* xf = as_f32(x, static_cast<std::size_t>(span_x));
    WeightRef wr;
    if (!xf || !weight_ref(w, static_cast<std::size_t>(span_w), "gemm_batched", wr)) return;
    const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
    const int B = static_cast<int>(batch), LDX = static_cast<int>(ldx),
              LDY = static_cast<int>(ldy);
    switch (wr.type) {
      case DType::kF32:
        gemm_ex(CUDA_R_32F, wr.real, sw, xf, LDX, sx, y, LDY, sy, M, N, K, 1.0f, 0.0f, B);
        return;
      case DType::kBF16: {
        const bf16_t* xb = to_bf16(xf, span_x);
        if (xb) gemm_ex(CUDA_R_16BF, wr.real, sw, xb, LDX, sx, y, LDY, sy, M, N, K, 1.0f, 0.0f, B);
        return;
      }
      case DType::kFP8: {  // dequantised to bf16 (MLA's absorbed projections are small)
        const bf16_t* xb = to_bf16(xf, span_x);
        auto* wd = static_cast<bf16_t*>(scratch(wdq_, static_cast<std::size_t>(span_w) * 2));
        if (!xb || !wd) return;
        if (!TPP_OK(kernels::fp8_to_bf16_cuda(reinterpret_cast<const fp8_t*>(wr.real), wd,
                                               span_w, wr.scale, stream_)))
          return;
        gemm_ex(CUDA_R_16BF, wd, sw, xb, LDX, sx, y, LDY, sy, M, N, K, 1.0f, 0.0f, B);
        return;
      }
    }
  }

  void add_rmsnorm(const float* x, float* residual, const float* w, float* y, std::int64_t rows,
                   std::int64_t cols, float eps) override {
    if (!live() || rows <= 0 || cols <= 0 || !is_f32(w, "add_rmsnorm weight")) return;
    TPP_OK(kernels::add_rmsnorm_cuda(x, residual, w, y, rows, cols, eps, stream_));
  }

  void rope(float* x, std::int64_t rows, std::int64_t heads, std::int64_t head_stride,
            std::int64_t offset, std::int64_t rot, const Rope& r) override {
    if (!live() || rows <= 0 || heads <= 0 || rot <= 0) return;
    if (!step_rows("rope", rows)) return;
    const float* inv = rope_table(r);
    if (!inv) return;
    TPP_OK(kernels::rope_cuda(x, positions_, rows, heads, head_stride, offset, rot, inv, r.mscale,
                              r.neox, stream_));
  }

  void silu_mul(const float* gate_up, float* out, std::int64_t rows, std::int64_t inter) override {
    if (!live() || rows <= 0 || inter <= 0) return;
    TPP_OK(kernels::silu_mul_cuda(gate_up, out, rows, inter, stream_));
  }

  void embedding(const float* table, std::int64_t vocab0, std::int64_t rows, std::int64_t dim,
                 float* out) override {
    if (!live() || rows_ <= 0 || dim <= 0) return;
    WeightRef t;
    if (!weight_ref(table, static_cast<std::size_t>(std::max<std::int64_t>(rows, 1) * dim),
                    "embedding", t))
      return;
    TPP_OK(kernels::embedding_cuda(tokens_, rows_, t.real, t.type, t.scale, vocab0, rows, dim,
                                   out, stream_));
  }

  void kv_write(const float* k, const float* v, float* k_pool, float* v_pool, std::int64_t heads,
                std::int64_t dim) override {
    if (!live() || rows_ <= 0) return;
    void* kp = kv_real(k_pool, "kv_write");
    void* vp = kv_real(v_pool, "kv_write");
    if (!kp || !vp) return;
    TPP_OK(kernels::kv_write_cuda(k, v, kp, vp, o_.kv, pb_.slot_mapping, rows_, heads, dim,
                                  block_size_, stream_));
  }

  void paged_attention(const float* q, const float* k_pool, const float* v_pool,
                       std::int64_t q_heads, std::int64_t kv_heads, std::int64_t dim, float scale,
                       float* out) override {
    if (!live() || rows_ <= 0) return;
    const void* kp = kv_real(k_pool, "paged_attention");
    const void* vp = kv_real(v_pool, "paged_attention");
    if (!kp || !vp) return;
    TPP_OK(kernels::paged_attention_cuda(q, kp, vp, o_.kv, pb_, q_heads, kv_heads, dim,
                                         block_size_, scale, out, stream_));
  }

  void latent_write(const float* latent, float* pool, std::int64_t width) override {
    if (!live() || rows_ <= 0) return;
    void* p = kv_real(pool, "latent_write");
    if (!p) return;
    TPP_OK(kernels::latent_write_cuda(latent, p, o_.kv, pb_.slot_mapping, rows_, width, stream_));
  }

  void mla_attention(const float* q_lat, const float* q_pe, const float* pool, std::int64_t heads,
                     std::int64_t lora, std::int64_t rope, float scale, float* out) override {
    if (!live() || rows_ <= 0) return;
    const void* p = kv_real(pool, "mla_attention");
    if (!p) return;
    TPP_OK(kernels::mla_attention_cuda(q_lat, q_pe, p, o_.kv, pb_, heads, lora, rope, block_size_,
                                       scale, out, stream_));
  }

  // vLLM's fused_experts, unfused: routing, the permutation that groups the pairs routed to the
  // local experts by expert, the experts' two GEMMs on their rows (counts copied to the host:
  // a synchronisation, so a backend that runs MoE never captures graphs), the combination.
  void moe(const float* x, const float* router_logits, std::int64_t rows, std::int64_t h,
           std::int64_t experts, std::int64_t k, const float* w13, const float* w2,
           std::int64_t first, std::int64_t local, std::int64_t inter, float* out) override {
    seen_moe_ = true;
    if (!live() || rows <= 0 || h <= 0) return;
    if (capturing_)
      return fail("moe during CUDA graph capture (a MoE model is never captured: its first step "
                  "runs eagerly)");
    const auto pairs = static_cast<std::size_t>(rows * k);
    auto* ids = static_cast<std::int32_t*>(scratch(moe_ids_, pairs * 4));
    auto* wts = static_cast<float*>(scratch(moe_wts_, pairs * 4));
    const auto nexp = static_cast<std::size_t>(std::max<std::int64_t>(local, 0) + 1);
    auto* offs = static_cast<std::int32_t*>(scratch(moe_offs_, nexp * 4));
    auto* src = static_cast<std::int32_t*>(scratch(moe_src_, pairs * 4));
    auto* whr = static_cast<std::int32_t*>(scratch(moe_where_, pairs * 4));
    auto* host = static_cast<std::int32_t*>(pinned(nexp * 4));
    if (!ids || !wts || !offs || !src || !whr || !host) return;
    if (!TPP_OK(kernels::topk_softmax_cuda(router_logits, rows, experts, k, ids, wts, stream_)))
      return;
    if (!TPP_OK(kernels::moe_permute_cuda(ids, rows, k, first, local, offs, src, whr, stream_)))
      return;
    if (!TPP_OK(cudaMemcpyAsync(host, offs, nexp * 4, cudaMemcpyDeviceToHost, stream_)))
      return;
    wait_stream();
    if (!live()) return;
    const std::vector<std::int32_t> off(host, host + nexp);
    const std::int64_t total = off[nexp - 1];
    const auto bytes = [](std::int64_t r, std::int64_t cols) {
      return static_cast<std::size_t>(std::max<std::int64_t>(r, 1) * cols) * sizeof(float);
    };
    auto* yp = static_cast<float*>(scratch(moe_y_, bytes(total, h)));
    if (!yp) return;
    if (total > 0) {
      auto* xp = static_cast<float*>(scratch(moe_x_, bytes(total, h)));
      auto* gu = static_cast<float*>(scratch(moe_gu_, bytes(total, 2 * inter)));
      auto* act = static_cast<float*>(scratch(moe_act_, bytes(total, inter)));
      if (!xp || !gu || !act) return;
      if (!TPP_OK(kernels::gather_rows_cuda(x, src, total, h, xp, stream_))) return;
      for (std::int64_t e = 0; e < local && live(); ++e) {
        const std::int64_t a = off[static_cast<std::size_t>(e)];
        const std::int64_t c = off[static_cast<std::size_t>(e + 1)] - a;
        if (c > 0)
          gemm(xp + a * h, w13 + e * 2 * inter * h, gu + a * 2 * inter, c, 2 * inter, h, false);
      }
      if (!live() || !TPP_OK(kernels::silu_mul_cuda(gu, act, total, inter, stream_))) return;
      for (std::int64_t e = 0; e < local && live(); ++e) {
        const std::int64_t a = off[static_cast<std::size_t>(e)];
        const std::int64_t c = off[static_cast<std::size_t>(e + 1)] - a;
        if (c > 0) gemm(act + a * inter, w2 + e * h * inter, yp + a * h, c, h, inter, false);
      }
    }
    if (live()) TPP_OK(kernels::moe_combine_cuda(yp, whr, wts, rows, k, h, out, stream_));
  }

  void add_bias(float* y, const float* bias, std::int64_t rows, std::int64_t cols) override {
    if (!live() || rows <= 0 || cols <= 0 || !is_f32(bias, "add_bias")) return;
    TPP_OK(kernels::add_bias_cuda(y, bias, rows, cols, stream_));
  }

  void add_scaled(float* y, const float* x, std::size_t n, float a) override {
    if (!live() || n == 0) return;
    TPP_OK(kernels::add_scaled_cuda(y, x, static_cast<std::int64_t>(n), a, stream_));
  }

  void sigmoid_gate(float* y, const float* gate, std::int64_t rows, std::int64_t cols) override {
    if (!live() || rows <= 0 || cols <= 0) return;
    TPP_OK(kernels::sigmoid_gate_cuda(y, gate, rows, cols, stream_));
  }

  void gather_samples(const float* src, std::int64_t cols, float* dst) override {
    if (!live() || num_samples_ <= 0 || cols <= 0) return;
    TPP_OK(kernels::gather_rows_cuda(src, samples_, num_samples_, cols, dst, stream_));
  }

  void argmax(const float* x, std::int64_t rows, std::int64_t cols,
              std::int64_t* host_out) override {
    if (rows <= 0) return check();
    if (live() && !not_capturing("argmax")) return check();
    auto* d = static_cast<std::int64_t*>(scratch(argmax_, static_cast<std::size_t>(rows) * 8));
    auto* h = static_cast<std::int64_t*>(pinned(static_cast<std::size_t>(rows) * 8));
    if (live() && d && h && TPP_OK(kernels::argmax_cuda(x, rows, cols, d, stream_)) &&
        TPP_OK(cudaMemcpyAsync(h, d, static_cast<std::size_t>(rows) * 8, cudaMemcpyDeviceToHost,
                               stream_)))
      wait_stream();
    check();
    std::memcpy(host_out, h, static_cast<std::size_t>(rows) * 8);
  }

 private:
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    std::uint64_t gen = 0;
  };
  struct RopeTable {
    std::vector<float> host;
    float* dev = nullptr;
    std::size_t cap = 0;
  };
  // A GEMM's weight operand: its real address, type and (fp8) scale.
  struct WeightRef {
    const void* real = nullptr;
    DType type = DType::kF32;
    float scale = 1.0f;
  };
  // A cached cuBLASLt fp8 plan for one shape.
  struct LtPlan {
    bool ok = false;
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };

  // ---- Errors --------------------------------------------------------------------------------

  bool live() const { return error_.empty(); }
  void fail(const std::string& m) {
    if (error_.empty()) error_ = m;
  }
  bool ok(cudaError_t e, const char* call, const char* file, int line) {
    if (e == cudaSuccess) return true;
    fail(std::string(call) + " failed at " + where(file, line) + ": " + cudaGetErrorString(e));
    return false;
  }
  bool ok(cublasStatus_t s, const char* call, const char* file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return true;
    fail(std::string(call) + " failed at " + where(file, line) + ": " + cublasGetStatusString(s));
    return false;
  }
  bool ok(const KernelStatus& s, const char* call, const char* file, int line) {
    if (s.ok) return true;
    fail(std::string(call) + " failed at " + where(file, line) + ": " + s.message);
    return false;
  }
  // Ends the job when an error was kept: printed once, then the Comm's abort (every rank ends).
  void check() {
    if (error_.empty()) return;
    if (capturing_) {  // the capture is discarded
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(stream_, &g);
      if (g) cudaGraphDestroy(g);
      capturing_ = false;
    }
    if (!reported_) {
      reported_ = true;
      std::fprintf(stderr, "tpp-run: error: rank %d: %s\n", comm().rank(), error_.c_str());
      std::fflush(stderr);
    }
    comm().abort(3);
  }

  bool not_capturing(const char* op) {
    if (!capturing_) return true;
    fail(std::string(op) + " while a CUDA graph is being captured (it waits on the host)");
    return false;
  }
  void bad_handle(const char* op, const void* p, std::size_t n) {
    char text[64];
    std::snprintf(text, sizeof text, "%p", p);
    fail(std::string(op) + ": " + text + " (+" + std::to_string(n) +
         " elements) is not inside one buffer of this backend's weights or KV pool");
  }
  // Operands that must be float32 memory of alloc (norm weights, biases, outputs).
  bool is_f32(const void* p, const char* what) {
    if (!weights_.contains(p) && !kv_.contains(p)) return true;
    fail(std::string(what) + ": a weight or KV handle where a float32 buffer of alloc is expected");
    return false;
  }
  bool step_rows(const char* op, std::int64_t rows) {
    if (rows <= rows_) return true;
    fail(std::string(op) + ": " + std::to_string(rows) + " rows, the step has " +
         std::to_string(rows_));
    return false;
  }

  // Waits for the stream, polling NCCL's asynchronous errors about once a second (a peer that
  // died mid-collective would otherwise keep this rank waiting).
  void wait_stream() {
    if (!live()) return;
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto polled = t0;
    for (;;) {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) {
        TPP_OK(e);
        return;
      }
      const auto now = clock::now();
      if (now - polled > std::chrono::seconds(1)) {
        polled = now;
        const std::string m = nccl_async_error();
        if (!m.empty()) return fail(m);
      }
      if (now - t0 > std::chrono::milliseconds(50))  // a long wait: stop spinning
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      else
        std::this_thread::yield();
    }
  }

  // ---- Memory helpers ------------------------------------------------------------------------

  void grow_pool(Pool& p, std::size_t elems, const char* what) {
    const cudaError_t e = p.add_segment(elems);
    if (e != cudaSuccess)
      fail("cudaMalloc of " + std::to_string(elems * p.elem_bytes()) + " bytes for " + what +
           " failed at " + where(__FILE__, __LINE__) + ": " + cudaGetErrorString(e));
  }
  float* take(Pool& p, std::size_t n, const char* what) {
    // Past the reservation (or without one): one more allocation, of at least 64 MiB so that
    // a caller that never reserved does not make one allocation per buffer.
    n = std::max<std::size_t>(n, 1);  // Pool::take hands out at least one element
    if (live() && p.room() < n)
      grow_pool(p, std::max(n, (std::size_t{64} << 20) / p.elem_bytes()), what);
    check();
    return p.take(n);
  }
  Pool* pool_of(const void* p) {
    return weights_.contains(p) ? &weights_ : kv_.contains(p) ? &kv_ : nullptr;
  }
  void* kv_real(const float* handle, const char* op) {
    Pool::Ref r;
    if (kv_.translate(handle, 1, r)) return r.real;
    if (weights_.contains(handle))
      fail(std::string(op) + ": a weight handle where a KV pool buffer (alloc_kv) is expected");
    else
      fail(std::string(op) + ": the pool is not a buffer of alloc_kv");
    return nullptr;
  }
  // A GEMM's weight: a weight handle (its type and scale), or float32 device memory of alloc.
  bool weight_ref(const float* w, std::size_t n, const char* op, WeightRef& out) {
    if (weights_.contains(w)) {
      Pool::Ref r;
      if (!weights_.translate(w, n, r)) return bad_handle(op, w, n), false;
      out = WeightRef{r.real, o_.weights, r.buf->scale};
      return true;
    }
    if (kv_.contains(w)) {
      fail(std::string(op) + ": a KV pool handle as a weight");
      return false;
    }
    out = WeightRef{w, DType::kF32, 1.0f};
    return true;
  }
  // x as float32 device memory: itself, or a handle's values converted into a scratch.
  const float* as_f32(const float* x, std::size_t n) {
    Pool* pool = pool_of(x);
    if (!pool) return x;
    Pool::Ref r;
    if (!pool->translate(x, n, r)) return bad_handle("gemm operand", x, n), nullptr;
    auto* f = static_cast<float*>(scratch(xf_, n * sizeof(float)));
    if (!f) return nullptr;
    convert_to_f32(r.real, pool == &weights_ ? o_.weights : o_.kv, f, n,
                   pool == &weights_ ? r.buf->scale : 1.0f);
    return live() ? f : nullptr;
  }
  const bf16_t* to_bf16(const float* x, std::int64_t n) {
    auto* b = static_cast<bf16_t*>(scratch(xb_, static_cast<std::size_t>(n) * 2));
    if (!b || !TPP_OK(kernels::f32_to_bf16_cuda(x, b, n, stream_))) return nullptr;
    return b;
  }
  void convert_from_f32(const float* src, char* dst, DType t, std::size_t n, float scale) {
    const auto c = static_cast<std::int64_t>(n);
    switch (t) {
      case DType::kF32:
        TPP_OK(cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToDevice, stream_));
        return;
      case DType::kBF16:
        TPP_OK(kernels::f32_to_bf16_cuda(src, reinterpret_cast<bf16_t*>(dst), c, stream_));
        return;
      case DType::kFP8:
        TPP_OK(kernels::f32_to_fp8_cuda(src, reinterpret_cast<fp8_t*>(dst), c, scale, stream_));
        return;
    }
  }
  void convert_to_f32(const char* src, DType t, float* dst, std::size_t n, float scale) {
    const auto c = static_cast<std::int64_t>(n);
    switch (t) {
      case DType::kF32:
        TPP_OK(cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToDevice, stream_));
        return;
      case DType::kBF16:
        TPP_OK(kernels::bf16_to_f32_cuda(reinterpret_cast<const bf16_t*>(src), dst, c, stream_));
        return;
      case DType::kFP8:
        TPP_OK(kernels::fp8_to_f32_cuda(reinterpret_cast<const fp8_t*>(src), dst, c, scale,
                                        stream_));
        return;
    }
  }
  // The fp8 scale of the buffer `r` is in, for a write that needs at least `needed` (0: any).
  // The first write chooses it; a later one that needs more requantises the buffer to it.
  float buffer_scale(Pool& p, const Pool::Ref& r, float needed) {
    Pool::Buffer& b = *r.buf;
    if (!b.scaled) {
      b.scale = needed > 0.0f ? needed : 1.0f;
      b.scaled = true;
      return b.scale;
    }
    if (needed <= b.scale) return b.scale;
    char* base = p.real_of(r.first);
    for (std::size_t i = 0; i < b.n && live() && base; i += kStageElems) {
      const std::size_t c = std::min(kStageElems, b.n - i);
      auto* stage = static_cast<float*>(scratch(stage_, c * sizeof(float)));
      if (!stage) break;
      convert_to_f32(base + i, DType::kFP8, stage, c, b.scale);
      convert_from_f32(stage, base + i, DType::kFP8, c, needed);
    }
    b.scale = needed;
    return b.scale;
  }
  // A scratch of at least `bytes`. Growing reallocates it: captured graphs that refer to it
  // are dropped (the generation moves on); never while capturing.
  void* scratch(Scratch& s, std::size_t bytes) {
    bytes = std::max<std::size_t>(bytes, 1);
    if (bytes <= s.bytes) return s.p;
    if (!live()) return nullptr;
    if (capturing_) {
      fail("a scratch buffer would grow (to " + std::to_string(bytes) +
           " bytes) while a CUDA graph is being captured");
      return nullptr;
    }
    const std::size_t want = round_up(std::max(bytes, s.bytes + s.bytes / 2), 256);
    if (s.p) TPP_OK(cudaFree(s.p));  // waits for the work that may still use it
    s.p = nullptr;
    s.bytes = 0;
    if (!TPP_OK(cudaMalloc(&s.p, want))) return nullptr;
    s.bytes = want;
    ++gen_;
    return s.p;
  }
  // Pinned host memory for small results (argmax, MoE counts); only grows, never captured.
  void* pinned(std::size_t bytes) {
    if (bytes <= pinned_bytes_) return pinned_;
    if (!live() || !not_capturing("a pinned buffer")) return nullptr;
    if (pinned_) {
      wait_stream();  // an earlier copy into it is done
      cudaFreeHost(pinned_);
    }
    pinned_ = nullptr;
    pinned_bytes_ = 0;
    const std::size_t want = std::max<std::size_t>(bytes, 4096);
    if (!TPP_OK(cudaHostAlloc(&pinned_, want, cudaHostAllocDefault))) return nullptr;
    pinned_bytes_ = want;
    return pinned_;
  }
  std::vector<Scratch*> all_scratch() {
    return {&meta_,   &stage_,   &xb_,     &xf_,       &xq_,  &wdq_,  &argmax_,
            &moe_ids_, &moe_wts_, &moe_offs_, &moe_src_, &moe_where_, &moe_x_, &moe_gu_,
            &moe_act_, &moe_y_};
  }
  // The device copy of a rotary table, kept by the Rope's address (and checked by value).
  const float* rope_table(const Rope& r) {
    RopeTable& t = ropes_[&r];
    if (t.dev && t.host == r.inv_freq) return t.dev;
    if (r.inv_freq.empty()) {
      fail("rope: an empty table of inverse frequencies");
      return nullptr;
    }
    if (!not_capturing("rope's first use of a table")) return nullptr;
    if (r.inv_freq.size() > t.cap) {
      if (t.dev) TPP_OK(cudaFree(t.dev));
      t.dev = nullptr;
      t.cap = 0;
      if (!TPP_OK(cudaMalloc(&t.dev, r.inv_freq.size() * sizeof(float)))) return nullptr;
      t.cap = r.inv_freq.size();
      ++gen_;
    }
    t.host = r.inv_freq;
    if (!TPP_OK(cudaMemcpyAsync(t.dev, t.host.data(), t.host.size() * sizeof(float),
                                cudaMemcpyHostToDevice, stream_)))
      return nullptr;  // a pageable source is staged before the call returns
    return t.dev;
  }

  // ---- GEMM helpers --------------------------------------------------------------------------

  // y_b^T[n, m] = w_b[n, k] . x_b^T[k, m] in column-major terms (see the top of the file): A =
  // w (lda k, op T), B = x (ldb ldx, op N), C = y (ldc ldy); `t` the type of w and x.
  void gemm_ex(cudaDataType t, const void* w, std::int64_t sw, const void* x, int ldx,
               std::int64_t sx, float* y, int ldy, std::int64_t sy, int m, int n, int k,
               float alpha, float beta, int batch) {
    if (batch == 1) {
      TPP_OK(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w, t, k, x, t, ldx,
                          &beta, y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      return;
    }
    TPP_OK(cublasGemmStridedBatchedEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w, t, k,
                                      static_cast<long long>(sw), x, t, ldx,
                                      static_cast<long long>(sx), &beta, y, CUDA_R_32F, ldy,
                                      static_cast<long long>(sy), batch, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
  }

  // fp8 x fp8 on tensor cores; false (nothing issued, or nothing that matters) when cuBLASLt
  // cannot do this shape, so that the caller dequantises instead.
  bool gemm_fp8(const float* xf, const WeightRef& wr, float* y, int m, int n, int k, float beta) {
    // fp8 kernels want 16-byte aligned matrices and leading dimensions.
    if (k % 16 != 0 || n % 4 != 0 || reinterpret_cast<std::uintptr_t>(wr.real) % 16 != 0 ||
        reinterpret_cast<std::uintptr_t>(y) % 16 != 0)
      return false;
    // The heuristic assumes 256-byte aligned operands unless told otherwise: an algorithm
    // chosen for aligned pointers may refuse (or misread) a less aligned weight slice or output
    // (an expert's rows of w13, a row offset into the MoE scratch). xq is a scratch: aligned.
    LtPlan* plan = lt_plan(m, n, k, beta != 0.0f, align_of(wr.real), align_of(y));
    if (!plan) return false;
    auto* xq = static_cast<fp8_t*>(scratch(xq_, static_cast<std::size_t>(m) * k));
    if (!xq) return false;
    const std::int64_t count = static_cast<std::int64_t>(m) * k;
    if (!TPP_OK(kernels::absmax_cuda(xf, count, amax_, stream_))) return true;
    if (!TPP_OK(kernels::quantize_fp8_dynamic_cuda(xf, count, amax_, xq, xscale_, stream_)))
      return true;
    const float alpha = wr.scale;  // the weight's per-tensor scale; the activation's on device
    const cublasStatus_t st =
        cublasLtMatmul(lt_, plan->desc, &alpha, wr.real, plan->a, xq, plan->b, &beta, y, plan->c,
                       y, plan->c, &plan->algo, workspace_, kWorkspaceBytes, stream_);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
      plan->ok = false;
      return false;
    }
    TPP_OK(st);
    return true;
  }

  // The largest power of two up to 256 that divides the address (cuBLASLt's alignment unit).
  static std::uint32_t align_of(const void* p) {
    const auto u = reinterpret_cast<std::uintptr_t>(p);
    std::uint32_t a = 256;
    while (a > 1 && u % a != 0) a /= 2;
    return a;
  }
  LtPlan* lt_plan(int m, int n, int k, bool accumulate, std::uint32_t align_a,
                  std::uint32_t align_c) {
    const auto key = std::make_tuple(m, n, k, accumulate, align_a, align_c);
    auto it = lt_plans_.find(key);
    if (it != lt_plans_.end()) return it->second.ok ? &it->second : nullptr;
    if (lt_plans_.size() >= kMaxLtPlans) clear_lt_plans();
    LtPlan& p = lt_plans_[key];
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const float* bscale = xscale_;
    constexpr cublasStatus_t kOk = CUBLAS_STATUS_SUCCESS;
    bool good =
        cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == kOk &&
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &bscale,
                                       sizeof bscale) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&p.a, CUDA_R_8F_E4M3, static_cast<std::uint64_t>(k),
                                   static_cast<std::uint64_t>(n), k) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&p.b, CUDA_R_8F_E4M3, static_cast<std::uint64_t>(k),
                                   static_cast<std::uint64_t>(m), k) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, static_cast<std::uint64_t>(n),
                                   static_cast<std::uint64_t>(m), n) == CUBLAS_STATUS_SUCCESS;
    if (good) {
      cublasLtMatmulPreference_t pref = nullptr;
      const std::uint64_t ws = kWorkspaceBytes;
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      const std::uint32_t align_b = 256;
      good = cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS &&
             cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &ws, sizeof ws) == CUBLAS_STATUS_SUCCESS &&
             cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                  &align_a, sizeof align_a) == kOk &&
             cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                  &align_b, sizeof align_b) == kOk &&
             cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                  &align_c, sizeof align_c) == kOk &&
             cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                  &align_c, sizeof align_c) == kOk &&
             cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result,
                                            &found) == CUBLAS_STATUS_SUCCESS &&
             found > 0 && result.state == CUBLAS_STATUS_SUCCESS;
      if (pref) cublasLtMatmulPreferenceDestroy(pref);
      if (good) p.algo = result.algo;
    }
    p.ok = good;  // a shape cuBLASLt refuses is remembered, and dequantised
    return good ? &p : nullptr;
  }
  void clear_lt_plans() {
    for (auto& [key, p] : lt_plans_) {
      if (p.a) cublasLtMatrixLayoutDestroy(p.a);
      if (p.b) cublasLtMatrixLayoutDestroy(p.b);
      if (p.c) cublasLtMatrixLayoutDestroy(p.c);
      if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    }
    lt_plans_.clear();
  }

  // ---- State ---------------------------------------------------------------------------------

  CudaOptions o_;
  int device_;
  bool fp8_tensor_cores_;
  Pool weights_, kv_;
  std::vector<void*> activations_;

  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  void* small_ = nullptr;     // amax_ and xscale_
  float* amax_ = nullptr;     // max |x| of the last fp8 GEMM's input
  float* xscale_ = nullptr;   // its dynamic scale (cuBLASLt's B scale)
  std::map<std::tuple<int, int, int, bool, std::uint32_t, std::uint32_t>, LtPlan> lt_plans_;

  Scratch meta_, stage_, xb_, xf_, xq_, wdq_, argmax_;
  Scratch moe_ids_, moe_wts_, moe_offs_, moe_src_, moe_where_, moe_x_, moe_gu_, moe_act_, moe_y_;
  void* meta_host_ = nullptr;
  std::size_t meta_host_bytes_ = 0;
  cudaEvent_t meta_event_ = nullptr;
  bool meta_pending_ = false;
  void* pinned_ = nullptr;
  std::size_t pinned_bytes_ = 0;
  std::map<const Rope*, RopeTable> ropes_;

  // The step.
  kernels::PagedBatch pb_{};
  const std::int64_t* tokens_ = nullptr;
  const std::int64_t* positions_ = nullptr;
  const std::int32_t* samples_ = nullptr;
  std::int64_t rows_ = 0, num_samples_ = 0, block_size_ = 0;
  std::int64_t graph_width_ = 0;

  // Graphs.
  bool eligible_ = false, capturing_ = false, seen_moe_ = false;
  std::uint64_t gen_ = 0, capture_gen_ = 0;
  std::map<std::int64_t, Graph> graphs_;
  std::map<std::int64_t, int> seen_;

  std::string error_;
  bool reported_ = false;
};

#undef TPP_OK

// The node-local rank, as the launchers tell it; the world rank otherwise.
int local_rank(const Comm& comm) {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                        "MV2_COMM_WORLD_LOCAL_RANK", "LOCAL_RANK"}) {
    const char* s = std::getenv(v);
    if (s && *s) {
      char* end = nullptr;
      const long r = std::strtol(s, &end, 10);
      if (end && *end == '\0' && r >= 0 && r <= INT_MAX) return static_cast<int>(r);
    }
  }
  return comm.rank();
}

}  // namespace

cudaStream_t cuda_backend_stream() { return g_stream.load(); }

std::unique_ptr<Backend> make_cuda_backend(Comm& comm, const CudaOptions& o, std::string& why) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count <= 0) {
    why = std::string("no CUDA device present (cudaGetDeviceCount: ") +
          (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") + ")";
    (void)cudaGetLastError();
    return nullptr;
  }
  if (o.device >= count) {
    why = "CUDA device " + std::to_string(o.device) + " requested, " + std::to_string(count) +
          " present";
    return nullptr;
  }
  const int device = o.device >= 0 ? o.device : local_rank(comm) % count;
  cudaDeviceProp prop{};
  const cudaError_t pe = cudaGetDeviceProperties(&prop, device);
  if (pe != cudaSuccess) {
    why = "cudaGetDeviceProperties(" + std::to_string(device) +
          ") failed: " + cudaGetErrorString(pe);
    return nullptr;
  }
  if (o.kv == DType::kFP8) {
    why = "an fp8 KV cache is not supported (the attention kernels read f32 or bf16 pools)";
    return nullptr;
  }
  if (o.weights == DType::kFP8 && prop.major < 8) {
    why = "fp8 weights need an Ampere or newer GPU; device " + std::to_string(device) + " (" +
          prop.name + ") is sm_" + std::to_string(prop.major * 10 + prop.minor);
    return nullptr;
  }
  auto b = std::make_unique<CudaBackend>(comm, o, device, prop);
  if (!b->init(why)) return nullptr;
  return b;
}

}  // namespace tpp::exec
