#!/usr/bin/env bash
# Stage 2 on one RTX 4090 (the paper's setting): one process, DeepSpeed engine, bf16. Run from any folder; paths are
# relative to it.
#   launch/train_single_4090.sh data.shards=shards/nbpath [more key=value overrides]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PROFILE="${PROFILE:-$LAUNCH_DIR/profiles/rtx4090.yaml}"
exec "$PYTHON" -m mmlnb_dist.cli train --config "$PROFILE" "$@"
