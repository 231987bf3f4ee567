#!/usr/bin/env bash
# Stage 2 on several nodes: run on the first node of the hostfile (passwordless ssh to the others; the same
# checkout and venv path on every node; the folder it is run from, the shards and the runs on shared storage or at
# the same path: the DeepSpeed launcher starts every node's processes in this folder).
#   HOSTFILE=launch/hostfile MASTER_ADDR=node1 launch/train_multinode.sh data.shards=/shared/shards/nbpath
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
HOSTFILE="${HOSTFILE:-$LAUNCH_DIR/hostfile}"
[[ -f "$HOSTFILE" ]] || { echo "train_multinode.sh: hostfile $HOSTFILE not found (set HOSTFILE; example:" \
                               "$LAUNCH_DIR/hostfile.example)" >&2; exit 2; }
PROFILE="${PROFILE:-$LAUNCH_DIR/profiles/multi-node.yaml}"
MASTER_ADDR="${MASTER_ADDR:-$(head -n1 "$HOSTFILE" | awk '{print $1}')}"
MASTER_PORT="${MASTER_PORT:-29500}"
exec "${DEEPSPEED[@]}" --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" --no_local_rank \
    --module mmlnb_dist.cli train --config "$PROFILE" "$@"
