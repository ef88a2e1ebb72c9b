#!/usr/bin/env bash
# Every test: install, build, run the suite (CTest), then the same unit tests again in an
# AddressSanitizer + UndefinedBehaviorSanitizer build (CUDA off there: the kernels' CPU
# references still run, their GPU comparisons skip).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

echo "== build (release, CUDA when available)"
scripts/build.sh build
echo "== tests"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== build (AddressSanitizer + UBSan)"
scripts/build.sh build-asan -DTPP_SANITIZE=ON -DTPP_ENABLE_CUDA=OFF -DTPP_BUILD_BENCHMARKS=OFF
# The MPI runs (mpi_*) are the release build's: OpenMPI's own allocations are not leak-clean.
echo "== tests under sanitizers"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -E "^mpi_"
