#!/usr/bin/env bash
# Stage 2 on several nodes: run on the first node of the hostfile (passwordless ssh to the others, the same
# checkout and venv path on every node, shards on shared storage or copied to the same path).
#   HOSTFILE=launch/hostfile MASTER_ADDR=node1 launch/train_multinode.sh data.shards=/shared/shards/nbpath
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTFILE="${HOSTFILE:-launch/hostfile}"
PROFILE="${PROFILE:-launch/profiles/multi-node.yaml}"
MASTER_ADDR="${MASTER_ADDR:-$(head -n1 "$HOSTFILE" | awk '{print $1}')}"
MASTER_PORT="${MASTER_PORT:-29500}"
exec .venv/bin/deepspeed --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    --module mmlnb_dist.cli train --config "$PROFILE" "$@"
