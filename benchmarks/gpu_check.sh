#!/usr/bin/env bash
# The checks that need a GPU, as one short script for a lent device (one CUDA GPU, torch with CUDA, no
# package registry): install the project without dependencies, run the tests marked `gpu`, then Prune4ReL's
# graph at N = 1,000,000 with the blocked build on the GPU (target: under a minute, gain "self" and "exact").
#
#   bash benchmarks/gpu_check.sh            # writes its outputs under $OUT when set, else ./gpu-check
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
python -m pip install --no-deps -q -e . > "$OUT/install.txt" 2>&1 || { cat "$OUT/install.txt"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
timeout 240 python -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tail -15 | tee "$OUT/pytest-gpu.txt"
timeout 300 python benchmarks/graph_scale.py --n 1000000 --backends blocked --device cuda 2>&1 \
    | tee "$OUT/graph-1m-cuda.txt"
