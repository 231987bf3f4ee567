#!/usr/bin/env bash
# Stage 2 on one node with N GPUs (default: all visible), data parallel under the deepspeed launcher.
#   NUM_GPUS=8 launch/train_node.sh data.shards=shards/nbpath
# The same with torchrun:  torchrun --nproc_per_node 8 -m mmlnb_dist.cli train --config <profile> ...
set -euo pipefail
cd "$(dirname "$0")/.."
NUM_GPUS="${NUM_GPUS:-$(.venv/bin/python -c 'import torch; print(max(1, torch.cuda.device_count()))')}"
PROFILE="${PROFILE:-launch/profiles/node-8gpu.yaml}"
exec .venv/bin/deepspeed --num_gpus "$NUM_GPUS" --module mmlnb_dist.cli train --config "$PROFILE" "$@"
