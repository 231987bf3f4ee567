#!/usr/bin/env bash
# Stage 1: LoRA fine-tuning of Qwen2.5-VL. Thin wrapper: every setting lives in the config. Run from any folder;
# paths are relative to it.
#
#   launch/finetune_vlm.sh                                   # one process (one GPU, or the CPU)
#   NUM_GPUS=8 launch/finetune_vlm.sh distributed.deepspeed_config=launch/deepspeed/vlm_zero3.json
#   HOSTFILE=hosts NUM_GPUS=8 launch/finetune_vlm.sh ...    # multi-node (DeepSpeed hostfile, passwordless ssh)
#
# CONFIG (default launch/profiles/rtx4090.yaml) and any KEY=VALUE overrides are passed through, e.g.
# vlm.pairs=shards/nbitp run.name=vlm-r64 run.resume=true. Without a run.name=... argument the run is named after
# the config file with -vlm appended (rtx4090.yaml: runs/rtx4090-vlm, adapter in runs/rtx4090-vlm/adapter, what
# launch/describe.sh --adapter reads), as the pipeline names its VLM run: the fusion stage (`train`, same
# profile) writes runs/rtx4090 and refuses a folder that already holds checkpoints.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CONFIG=${CONFIG:-$LAUNCH_DIR/profiles/rtx4090.yaml}
NUM_GPUS=${NUM_GPUS:-1}
RUN_NAME=()
for arg in "$@"; do [[ "$arg" == run.name=* ]] && RUN_NAME=("$arg"); done
if [[ ${#RUN_NAME[@]} -eq 0 ]]; then
  base=$(basename "$CONFIG"); base=${base%.yaml}; base=${base%.yml}
  set -- "run.name=${base}-vlm" "$@"
fi
if [[ -n "${HOSTFILE:-}" ]]; then
  exec "${DEEPSPEED[@]}" --hostfile "$HOSTFILE" --num_gpus "$NUM_GPUS" --no_local_rank \
    --module mmlnb_dist.cli finetune-vlm --config "$CONFIG" "$@"
elif [[ "$NUM_GPUS" -gt 1 ]]; then
  exec "${DEEPSPEED[@]}" --num_gpus "$NUM_GPUS" --no_local_rank \
    --module mmlnb_dist.cli finetune-vlm --config "$CONFIG" "$@"
else
  exec "$PYTHON" -m mmlnb_dist.cli finetune-vlm --config "$CONFIG" "$@"
fi
