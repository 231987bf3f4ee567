#!/usr/bin/env bash
# Stage 2 on several nodes: run on the first node of the hostfile (passwordless ssh to the others; the same
# checkout and venv path on every node; the folder it is run from, the shards and the runs on shared storage or at
# the same path: the DeepSpeed launcher starts every node's processes in this folder).
#   HOSTFILE=launch/hostfile MASTER_ADDR=node1 launch/train_multinode.sh data.shards=/shared/shards/nbpath
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
HOSTFILE="${HOSTFILE:-$LAUNCH_DIR/hostfile}"
read_hostfile "$HOSTFILE"  # HOSTS; a missing file or a wrong line is refused here (common.sh)
PROFILE="${PROFILE:-$LAUNCH_DIR/profiles/multi-node.yaml}"
MASTER_ADDR="${MASTER_ADDR:-${HOSTS[0]}}"
MASTER_PORT="${MASTER_PORT:-29500}"
# A SIGTERM to this script reaches the DeepSpeed runner and this node's processes (run_launcher, common.sh); the
# runner then stops the other nodes' ranks over pdsh (pkill: SIGTERM; see docs/scaling.md).
run_launcher "${DEEPSPEED[@]}" --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    --no_local_rank --module mmlnb_dist.cli train --config "$PROFILE" "$@"
