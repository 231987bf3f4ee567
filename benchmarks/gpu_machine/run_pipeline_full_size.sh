#!/bin/bash
# On the CUDA machine, from the repository root: the rtx4090 profile's pipeline up to train with full-size models of
# random weights (full_size_models.py: Qwen2.5-VL-7B, BERT-base; VGG16 unpretrained) on ${N:-120} synthetic patches,
# one VLM epoch and ${EPOCHS:-3} fusion epochs, stdout tracking: each stage's wall time at the profile's model sizes
# and settings. About 6 minutes on an H200 (writing and loading 16 GB of weights included). Output in ${OUT:-gpu-out}.
# SHRINK=1 (small models of the same layout), EXTRA="key=value ...", PYTHON: the CPU check in
# tests/benchmarks/test_full_size_pipeline.py.
set -o pipefail
PY=${PYTHON:-python3}
OUT=$(realpath -m "${OUT:-gpu-out}"); mkdir -p "$OUT"
source benchmarks/gpu_machine/setup_env.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-full-size.XXXX")
"$PY" benchmarks/gpu_machine/full_size_models.py --out "$work/models" ${SHRINK:+--shrink} 2>&1 | grep -v "Writing model shards" \
  | tee "$OUT/models.log" || exit 1
cd "$work" || exit 1
timeout -s INT "${LIMIT_S:-480}" "$PY" -m mmlnb_dist.cli pipeline --config rtx4090 --synthetic --until train \
  $(cat models/overrides.txt) data.synth.n="${N:-120}" data.synth.n_slides=12 data.synth_dir="$work/src" \
  data.shards="$work/shards" vlm.pairs="$work/shards" run.output_dir="$work/runs" tracking.backends=[stdout] \
  vlm.epochs=1 train.epochs="${EPOCHS:-3}" $EXTRA > "$OUT/pipeline_full_size_stdout.log" 2>&1
echo "pipeline exit $?"
cp runs/rtx4090-pipeline/report-synth-train.md "$OUT/report_full_size.md" 2>/dev/null  # (a --until slice's report)
cp runs/rtx4090-pipeline/pipeline.log "$OUT/pipeline_full_size.log" 2>/dev/null
tail -c 2500 "$OUT/pipeline_full_size_stdout.log" | tr '\r' '\n' | tail -30
