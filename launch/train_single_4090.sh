#!/usr/bin/env bash
# Stage 2 on one RTX 4090 (the paper's setting): one process, DeepSpeed engine, bf16.
#   launch/train_single_4090.sh data.shards=shards/nbpath [more key=value overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/mmlnb-dist train --config launch/profiles/rtx4090.yaml "$@"
