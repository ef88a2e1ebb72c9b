// gpu_probe: the few GPU figures the step-cost model needs, measured (the seed of tpp-profile):
//   launch   per-kernel cost of an empty kernel launched one by one, and replayed from a graph
//   gemm     cuBLAS bf16 GEMM [M x K] x [K x N] TFLOP/s for M from 1 to 8192 (N = K = 8192)
//   copy     device-to-device copy bandwidth (bytes read + written)
// Each figure is the median of repeated timed runs after warm-ups (CUDA events).
// Build: nvcc -O2 -arch=sm_90 bench/gpu_probe.cu -lcublas -o gpu_probe
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#define CHECK(x)                                                                     \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess) {                                                         \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x,                \
                   cudaGetErrorString(e_));                                          \
      return 1;                                                                      \
    }                                                                                \
  } while (0)

__global__ void empty_kernel() {}

template <class F>
float median_ms(F f, int reps) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(a);
    f();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device,%s,sms,%d\n", prop.name, prop.multiProcessorCount);

  const int kLaunches = 1000;
  for (int w = 0; w < 100; ++w) empty_kernel<<<1, 32>>>();
  CHECK(cudaDeviceSynchronize());
  float eager = median_ms([&] { for (int k = 0; k < kLaunches; ++k) empty_kernel<<<1, 32>>>(); }, 21);
  cudaStream_t s;
  CHECK(cudaStreamCreate(&s));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int k = 0; k < kLaunches; ++k) empty_kernel<<<1, 32, 0, s>>>();
  CHECK(cudaStreamEndCapture(s, &g));
  CHECK(cudaGraphInstantiate(&ge, g, 0));
  CHECK(cudaGraphLaunch(ge, s));
  CHECK(cudaStreamSynchronize(s));
  float graph = median_ms([&] { cudaGraphLaunch(ge, 0); }, 21);
  std::printf("launch,eager_us_per_kernel,%.3f,graph_us_per_kernel,%.3f\n",
              eager * 1000 / kLaunches, graph * 1000 / kLaunches);

  const int N = 8192, K = 8192, Mmax = 8192;
  __nv_bfloat16 *A, *B, *C;
  CHECK(cudaMalloc(&A, sizeof(__nv_bfloat16) * Mmax * K));
  CHECK(cudaMalloc(&B, sizeof(__nv_bfloat16) * K * N));
  CHECK(cudaMalloc(&C, sizeof(__nv_bfloat16) * Mmax * N));
  CHECK(cudaMemset(A, 0x3c, sizeof(__nv_bfloat16) * Mmax * K));  // ~1.0 in bf16 bytes
  CHECK(cudaMemset(B, 0x3c, sizeof(__nv_bfloat16) * K * N));
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return 1;
  const float alpha = 1, beta = 0;
  for (int M : {1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}) {
    auto run = [&] {
      cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_16BF, N, A,
                   CUDA_R_16BF, K, &beta, C, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F,
                   CUBLAS_GEMM_DEFAULT);
    };
    for (int w = 0; w < 5; ++w) run();
    CHECK(cudaDeviceSynchronize());
    float ms = median_ms(run, 21);
    double flops = 2.0 * M * N * K, bytes = 2.0 * (double(M) * K + double(K) * N + double(M) * N);
    std::printf("gemm,M,%d,N,%d,K,%d,ms,%.4f,tflops,%.1f,GBps,%.0f\n", M, N, K, ms,
                flops / ms / 1e9, bytes / ms / 1e6);
  }
  const size_t bytes = size_t(1) << 30;
  void *x, *y;
  CHECK(cudaMalloc(&x, bytes));
  CHECK(cudaMalloc(&y, bytes));
  CHECK(cudaMemcpy(y, x, bytes, cudaMemcpyDeviceToDevice));
  float ms = median_ms([&] { cudaMemcpy(y, x, bytes, cudaMemcpyDeviceToDevice); }, 11);
  std::printf("copy,bytes,%zu,ms,%.3f,GBps_read_plus_write,%.0f\n", bytes, ms,
              2.0 * bytes / ms / 1e6);
  return 0;
}
