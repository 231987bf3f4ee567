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
# The hosts, read as DeepSpeed reads the hostfile: blank lines and comments (#) skipped, every other line
# "<hostname> slots=<GPUs>". Checked here, so that a wrong line is named before any node starts and MASTER_ADDR
# is the first host (the first line of a copy of hostfile.example is a comment).
HOSTS=()
LINE_NO=0
while IFS= read -r LINE || [[ -n "$LINE" ]]; do
  LINE_NO=$((LINE_NO + 1))
  [[ "$LINE" =~ ^[[:space:]]*(#|$) ]] && continue
  if ! [[ "$LINE" =~ ^[[:space:]]*([^[:space:]]+)[[:space:]]+slots=[0-9]+([[:space:]]|$) ]]; then
    echo "train_multinode.sh: $HOSTFILE:$LINE_NO: '$LINE' is not '<hostname> slots=<GPUs on it>'" \
         "(see $LAUNCH_DIR/hostfile.example)" >&2
    exit 2
  fi
  for HOST in "${HOSTS[@]}"; do
    if [[ "$HOST" == "${BASH_REMATCH[1]}" ]]; then
      echo "train_multinode.sh: $HOSTFILE:$LINE_NO: host $HOST is listed twice (one line per node)" >&2
      exit 2
    fi
  done
  HOSTS+=("${BASH_REMATCH[1]}")
done < "$HOSTFILE"
[[ ${#HOSTS[@]} -ge 1 ]] || { echo "train_multinode.sh: hostfile $HOSTFILE lists no hosts (one line per node:" \
                                   "'<hostname> slots=<GPUs on it>', see $LAUNCH_DIR/hostfile.example)" >&2; exit 2; }
MASTER_ADDR="${MASTER_ADDR:-${HOSTS[0]}}"
MASTER_PORT="${MASTER_PORT:-29500}"
# A SIGTERM to this script reaches the DeepSpeed runner and this node's processes (run_launcher, common.sh); the
# runner then stops the other nodes' ranks over pdsh (pkill: SIGTERM; see docs/scaling.md).
run_launcher "${DEEPSPEED[@]}" --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    --no_local_rank --module mmlnb_dist.cli train --config "$PROFILE" "$@"
