#!/usr/bin/env bash
# Stage 1: LoRA fine-tuning of Qwen2.5-VL. Thin wrapper: every setting lives in the config. Run from any folder;
# paths are relative to it.
#
#   launch/finetune_vlm.sh                                   # one process (one GPU, or the CPU)
#   NUM_GPUS=8 launch/finetune_vlm.sh distributed.deepspeed_config=launch/deepspeed/vlm_zero3.json
#   HOSTFILE=hosts launch/finetune_vlm.sh ...    # multi-node (DeepSpeed hostfile, passwordless ssh): its slots
#                                                # per node (NUM_GPUS=N: N per node), master its first host
#
# CONFIG (default launch/profiles/rtx4090.yaml) and any KEY=VALUE overrides are passed through, e.g.
# vlm.pairs=shards/nbitp run.name=vlm-r64 run.resume=true. Without a run.name=... argument the run is named as the
# pipeline names its VLM run, the config's run.name with -vlm appended (rtx4090.yaml: runs/rtx4090-vlm, adapter in
# runs/rtx4090-vlm/adapter, what launch/describe.sh --adapter reads): the fusion stage (`train`, same config) writes
# runs/rtx4090 and refuses a folder that already holds checkpoints. The run folder is logged at the start.
# A SIGTERM to this script (a scheduler, docker stop, kill PID) reaches the DeepSpeed runner and every rank
# (run_launcher, common.sh): the ranks checkpoint the step they are in and stop; the script exits 130.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CONFIG=${CONFIG:-$LAUNCH_DIR/profiles/rtx4090.yaml}
[[ -z "${NUM_GPUS:-}" ]] || check_num_gpus "$NUM_GPUS"  # a positive number (common.sh)
NAMING=(--name-after-fusion-run)
for arg in "$@"; do [[ "$arg" == run.name=* ]] && NAMING=(); done
if [[ -n "${HOSTFILE:-}" ]]; then
  # as train_multinode.sh: the hostfile checked, the master its first host; processes per node: its slots, unless
  # NUM_GPUS is set (the one-process default below gave every node one rank whatever its slots)
  read_hostfile "$HOSTFILE"
  MASTER_ADDR=${MASTER_ADDR:-${HOSTS[0]}}
  hostfile_master_port "$MASTER_ADDR" --config "$CONFIG" "${NAMING[@]}" "$@"  # a port (common.sh)
  hostfile_per_node "${NUM_GPUS:-}"  # PER_NODE; NUM_GPUS at most every host's slots (common.sh)
  pdsh_safe_arguments --config "$CONFIG" "${NAMING[@]}" "$@"  # what the nodes' shell would change (common.sh)
  run_launcher "${DEEPSPEED[@]}" --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" \
    --master_port "$MASTER_PORT" "${PER_NODE[@]}" --no_local_rank \
    --module mmlnb_dist.cli finetune-vlm --config "$CONFIG" "${NAMING[@]}" "$@"
elif [[ "${NUM_GPUS:-1}" -gt 1 ]]; then
  deepspeed_local_gpus "$NUM_GPUS"  # at most the GPUs this node shows, those of CUDA_VISIBLE_DEVICES (common.sh)
  local_master_port  # MASTER_PORT, else a free port (common.sh)
  run_launcher "${DEEPSPEED[@]}" "${DEEPSPEED_GPUS[@]}" --master_port "$LOCAL_MASTER_PORT" --no_local_rank \
    --module mmlnb_dist.cli finetune-vlm --config "$CONFIG" "${NAMING[@]}" "$@"
else
  exec "$PYTHON" -m mmlnb_dist.cli finetune-vlm --config "$CONFIG" "${NAMING[@]}" "$@"
fi
