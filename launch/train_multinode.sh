#!/usr/bin/env bash
# Stage 2 on several nodes: run on the first node of the hostfile (passwordless ssh to the others; the same
# checkout and venv path on every node; the folder it is run from, the shards and the runs on shared storage or at
# the same path: the DeepSpeed launcher starts every node's processes in this folder).
#   HOSTFILE=launch/hostfile MASTER_ADDR=node1 launch/train_multinode.sh data.shards=/shared/shards/nbpath
# One process per slot of the hostfile on every node; NUM_GPUS=N starts N per node.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
HOSTFILE="${HOSTFILE:-$LAUNCH_DIR/hostfile}"
read_hostfile "$HOSTFILE"  # HOSTS; a missing file or a wrong line is refused here (common.sh)
PROFILE="${PROFILE:-$LAUNCH_DIR/profiles/multi-node.yaml}"
MASTER_ADDR="${MASTER_ADDR:-${HOSTS[0]}}"
# a port number, before any node starts; on this machine, a free one (or the one given, checked free); on another
# host, one derived from this run: common.sh
hostfile_master_port "$MASTER_ADDR" --config "$PROFILE" "$@"
# Processes per node: the hostfile's slots, or NUM_GPUS where set (as finetune_vlm.sh; it used to be ignored here)
hostfile_per_node "${NUM_GPUS:-}"  # PER_NODE; NUM_GPUS at most every host's slots (common.sh)
pdsh_safe_arguments --config "$PROFILE" "$@"  # what the nodes' remote shell would change is refused (common.sh)
# A SIGTERM to this script reaches the DeepSpeed runner and this node's processes (run_launcher, common.sh); the
# runner then stops the other nodes' ranks over pdsh (pkill: SIGTERM; see docs/scaling.md).
run_launcher "${DEEPSPEED[@]}" --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    "${PER_NODE[@]}" --no_local_rank --module mmlnb_dist.cli train --config "$PROFILE" "$@"
