#!/usr/bin/env bash
# Configures and builds tpp. Usage: scripts/build.sh [BUILD_DIR] [extra cmake args...]
# CUDA kernels are compiled when nvcc is found (also in /usr/local/cuda/bin when not on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
shift || true
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
