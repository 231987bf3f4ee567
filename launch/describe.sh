#!/usr/bin/env bash
# Describe every patch of a shard set with the fine-tuned VLM (batched; one shard set out, resumable). Run from any
# folder; paths are relative to it.
#
#   launch/describe.sh --adapter runs/rtx4090-vlm/adapter --shards shards/nbpath --out shards/nbpath-described
#   NUM_GPUS=8 launch/describe.sh --adapter ... --shards ... --out ...     # shards dealt round-robin to ranks
#
# (runs/rtx4090-vlm: the run launch/finetune_vlm.sh writes with the default CONFIG.)
# Re-running the same command after an interruption continues where it stopped. A SIGTERM, SIGUSR1 or SIGUSR2 to this
# script stops every rank (what they described is kept: run it again to continue; exit 130).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
CONFIG=${CONFIG:-$LAUNCH_DIR/profiles/rtx4090.yaml}
NUM_GPUS=${NUM_GPUS:-1}
check_num_gpus "$NUM_GPUS"  # a positive number (common.sh)
if [[ "$NUM_GPUS" -gt 1 ]]; then
  node_processes "$NUM_GPUS"  # at most the GPUs this node shows (common.sh)
  local_master_port  # MASTER_PORT, else a free port (common.sh)
  # (run_launcher, common.sh: a signal to this script reaches torchrun and the ranks; exec'd, torchrun alone got it)
  run_launcher "${TORCHRUN[@]}" --nproc_per_node "$NUM_GPUS" --master_port "$LOCAL_MASTER_PORT" \
    -m mmlnb_dist.cli describe --config "$CONFIG" "$@"
else
  exec "$PYTHON" -m mmlnb_dist.cli describe --config "$CONFIG" "$@"
fi
