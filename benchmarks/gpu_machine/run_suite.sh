#!/bin/bash
# On the CUDA machine, from the repository root: the GPU suite, its log and JSON in ${OUT:-gpu-out}.
set -o pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
source benchmarks/gpu_machine/setup_env.sh
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv;
  lscpu | grep -E "Model name|^CPU\(s\)"; uptime; } 2>&1 | tee "$OUT/log"
timeout -s INT "${SUITE_LIMIT_S:-520}" python3 benchmarks/gpu_suite.py --out "$OUT/gpu_suite.json" 2>&1 | tee -a "$OUT/log"
echo "suite exit $?; $(uptime)" | tee -a "$OUT/log"
