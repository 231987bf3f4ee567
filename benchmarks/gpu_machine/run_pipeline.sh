#!/bin/bash
# On the CUDA machine, from the repository root: the embedded default's pipeline up to train (MLflow is not carried;
# evaluate and register need it), with stdout tracking. Report, log and console output in ${OUT:-gpu-out}.
set -o pipefail
OUT=$(realpath -m "${OUT:-gpu-out}"); mkdir -p "$OUT"
source benchmarks/gpu_machine/setup_env.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-pipeline.XXXX") && cd "$work" || exit 1
timeout -s INT "${LIMIT_S:-300}" python3 -m mmlnb_dist.cli pipeline --config cpu-demo --synthetic --until train \
  tracking.backends=[stdout] run.output_dir="$work/runs" > "$OUT/pipeline_stdout.log" 2>&1
echo "pipeline exit $?"
cp runs/cpu-demo-pipeline/report-synth-train.md "$OUT/report.md" 2>/dev/null  # (a --until slice's report)
cp runs/cpu-demo-pipeline/pipeline.log "$OUT/" 2>/dev/null
tail -c 2500 "$OUT/pipeline_stdout.log" | tr '\r' '\n' | tail -30
