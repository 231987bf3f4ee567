#!/usr/bin/env bash
# Stage 2 on one node with N GPUs (default: all visible), data parallel under the deepspeed launcher. Run from any
# folder; paths are relative to it.
#   NUM_GPUS=8 launch/train_node.sh data.shards=shards/nbpath
# A SIGTERM to this script (docker stop, Kubernetes, systemd, kill PID) reaches the launcher and every rank: they
# checkpoint the step they are in and stop, and the script exits 130 once they are gone (run_launcher, common.sh).
# The same with torchrun:  torchrun --nproc_per_node 8 -m mmlnb_dist.cli train --config <profile> ...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# NUM_GPUS processes (default: one per GPU CUDA shows; CUDA_VISIBLE_DEVICES=2,3 picks the GPUs): common.sh
deepspeed_local_gpus "${NUM_GPUS:-}"
local_master_port  # MASTER_PORT, else a free port (common.sh)
PROFILE="${PROFILE:-$LAUNCH_DIR/profiles/node-8gpu.yaml}"
run_launcher "${DEEPSPEED[@]}" "${DEEPSPEED_GPUS[@]}" --master_port "$LOCAL_MASTER_PORT" --no_local_rank --module mmlnb_dist.cli train \
    --config "$PROFILE" "$@"
