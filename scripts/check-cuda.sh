#!/usr/bin/env bash
# Compiles pretext with the `cuda` feature on a machine without a GPU or a
# CUDA install: NVIDIA's compiler and headers come from PyPI wheels, pinned.
# It checks that the CUDA code path builds (`cargo check`), not that it runs.
#
#   bash scripts/check-cuda.sh            # about 7 minutes the first time
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${CUDA_WHEELS:-$HOME/.cache/pretext-cuda}
if [ ! -x "$prefix/nvidia/cu13/bin/nvcc" ]; then
  python3 -m pip install --quiet --target "$prefix" \
    nvidia-cuda-nvcc==13.4.92 nvidia-nvvm==13.4.92 nvidia-cuda-crt==13.4.92 \
    nvidia-cuda-runtime==13.4.92 nvidia-cuda-cccl==13.3.5.0.6
fi
export CUDA_HOME="$prefix/nvidia/cu13"
export PATH="$CUDA_HOME/bin:$PATH"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}
cargo check --release --features "${PRETEXT_CUDA_FEATURES:-cuda nccl}" --all-targets
echo "features ${PRETEXT_CUDA_FEATURES:-cuda nccl}: cargo check passed"
