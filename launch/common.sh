# shellcheck shell=bash disable=SC2034  # sourced: its variables are read by the wrapper that sources it
# Sourced by the launch/ wrappers: where this checkout is and which Python runs mmlnb-dist. The wrappers do not
# cd: the paths a user passes (data.shards=..., run.output_dir=..., --shards, --out) are relative to the folder the
# wrapper is run from, as for the mmlnb-dist command itself, and run from any folder the wrappers work the same.
#   PYTHON  the interpreter (default: the checkout's .venv/bin/python, else python3 on PATH); the DeepSpeed
#           launcher and torchrun run as `$PYTHON -m ...`, so they are the ones installed beside it.
LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$LAUNCH_DIR/../.venv/bin/python" ]]; then PYTHON="$LAUNCH_DIR/../.venv/bin/python"; else PYTHON=python3; fi
fi
"$PYTHON" -c "import mmlnb_dist" 2>/dev/null || {
  echo "$(basename "$0"): $PYTHON cannot import mmlnb_dist: run 'bash $LAUNCH_DIR/install.sh', or set PYTHON to" \
       "the interpreter it is installed for" >&2
  exit 2
}
DEEPSPEED=("$PYTHON" -m deepspeed.launcher.runner)
source "$LAUNCH_DIR/pdsh_safe.sh"  # pdsh_safe_arguments
TORCHRUN=("$PYTHON" -m torch.distributed.run)

# run_launcher CMD [ARG...]: run a launcher (the DeepSpeed runner, torchrun) and exit with its status, forwarding
# SIGTERM and SIGINT to every process it started (SIGHUP, a closed terminal, as SIGTERM). Started with `exec`, the
# launcher alone got the signal a scheduler, `docker stop`, Kubernetes, systemd or `kill PID` sends the wrapper:
# DeepSpeed's runner handles it only for multi-node pdsh, so it died and left `deepspeed.launcher.launch` and the
# ranks training to the end, without the step checkpoint of a graceful stop. Here the launcher runs in a process
# group of its own (job control, `set -m`: a plain `cmd &` in a script would start it with SIGINT ignored, so a
# forwarded Ctrl-C reached nothing); a signal to the wrapper goes to that whole group (the launcher, the ranks, their
# loader workers: as Slurm and a terminal signal a job), the ranks finish their step and checkpoint it
# (`core.signals.GracefulStop`; SIGINT, Ctrl-C, stops them at once), and the wrapper returns once no process of the
# group is left, with exit code 130 ("interrupted", as mmlnb-dist itself). A second signal is forwarded too (a
# SIGTERM 5 s or more after the first stops the ranks at once). SIGUSR1 and SIGUSR2 (a scheduler's warning signal,
# Slurm's --signal=USR1@..., LSF, PBS) are forwarded as SIGTERM, the graceful stop: bash's default ended the wrapper
# alone and left the launcher and the ranks training, orphaned (as is, they would kill the ranks without a checkpoint).
run_launcher() {
  _LAUNCHER_SIGNAL="" _LAUNCHER_PID="" _LAUNCHER_RECEIVED=""
  trap '_forward_to_launcher TERM' TERM
  trap '_forward_to_launcher INT' INT
  trap '_forward_to_launcher TERM HUP' HUP  # a closed terminal: the graceful stop
  trap '_forward_to_launcher TERM USR1' USR1
  trap '_forward_to_launcher TERM USR2' USR2
  set -m  # the job gets a process group of its own (pgid = its pid) and the default SIGINT / SIGQUIT handlers
  "$@" &  # (the child does not keep the traps: it execs with the default handlers)
  _LAUNCHER_PID=$!
  set +m
  # a signal that came before the launcher started
  [[ -z "$_LAUNCHER_SIGNAL" ]] || _forward_to_launcher "$_LAUNCHER_SIGNAL" "$_LAUNCHER_RECEIVED"
  local rc=0
  wait "$_LAUNCHER_PID" || rc=$?
  if [[ -n "$_LAUNCHER_SIGNAL" ]]; then
    # The runner may be gone already (no handler: the signal ended it) while the ranks still save their step.
    while kill -0 -- "-$_LAUNCHER_PID" 2>/dev/null; do
      sleep 0.5 &
      wait $! || true
    done
    wait "$_LAUNCHER_PID" 2>/dev/null || true
    local as=""
    [[ "$_LAUNCHER_RECEIVED" == "$_LAUNCHER_SIGNAL" ]] || as=" as SIG$_LAUNCHER_SIGNAL"
    echo "$(basename "$0"): stopped by SIG$_LAUNCHER_RECEIVED (forwarded$as to the launcher and the ranks)" >&2
    exit 130
  fi
  exit "$rc"
}

# _forward_to_launcher SIGNAL [RECEIVED]: SIGNAL (for the signal RECEIVED, default the same) to the launcher's group
_forward_to_launcher() {
  _LAUNCHER_SIGNAL=$1 _LAUNCHER_RECEIVED=${2:-$1}
  [[ -n "$_LAUNCHER_PID" ]] || return 0
  kill -s "$1" -- "-$_LAUNCHER_PID" 2>/dev/null || kill -s "$1" "$_LAUNCHER_PID" 2>/dev/null || true
}

# check_num_gpus N: exit 2, naming NUM_GPUS, unless N is a positive number.
check_num_gpus() {
  [[ "$1" =~ ^[1-9][0-9]*$ ]] && return 0
  echo "$(basename "$0"): NUM_GPUS=$1 is not a positive number of processes" >&2
  exit 2
}

# node_processes [N]: how many processes to start on this node (N: NUM_GPUS; empty: one per GPU this node shows,
# else 1), checked before anything starts: a positive number (bash arithmetic read "two" as an unset variable and
# 0 or -1 as one process), and no more than the GPUs CUDA shows here (the ranks beyond them took a GPU another rank
# had, local rank modulo the GPUs, and NCCL failed on a duplicate GPU; without GPUs any number of CPU processes).
# Sets NODE_PROCESSES, and NODE_GPUS (the GPUs CUDA shows, CUDA_VISIBLE_DEVICES narrowing them).
node_processes() {
  local n=${1:-}
  [[ -z "$n" ]] || check_num_gpus "$n"
  NODE_GPUS=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')
  [[ -n "$n" ]] || n=$(( NODE_GPUS > 0 ? NODE_GPUS : 1 ))
  if (( NODE_GPUS > 0 && n > NODE_GPUS )); then
    echo "$(basename "$0"): NUM_GPUS=$n but this node shows $NODE_GPUS GPUs" \
         "(CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}): start at most one process per GPU" >&2
    exit 2
  fi
  NODE_PROCESSES=$n
}

# deepspeed_local_gpus [N]: sets DEEPSPEED_GPUS, the DeepSpeed runner's options for N processes on this node alone
# (node_processes). Given --num_gpus the runner ignores CUDA_VISIBLE_DEVICES and gives the ranks GPUs 0..N-1:
# `CUDA_VISIBLE_DEVICES=2,3 launch/train_node.sh` trained on GPUs 0 and 1, maybe another job's. Where it is set,
# the runner gets no --num_gpus and takes its GPUs from it (`--include localhost:...`), narrowed here to the first N.
deepspeed_local_gpus() {
  node_processes "${1:-}"
  if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]] && (( NODE_GPUS > 0 )); then
    local ids
    IFS=, read -r -a ids <<< "$CUDA_VISIBLE_DEVICES"
    # the runner reads every slot of --include as a number: GPU-/MIG- UUIDs failed in its parser (a ValueError)
    if ! [[ "$CUDA_VISIBLE_DEVICES" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
      echo "$(basename "$0"): CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES: DeepSpeed's launcher takes GPUs by index" \
           "(CUDA_VISIBLE_DEVICES=2,3; nvidia-smi -L lists each GPU's index and UUID)" >&2
      exit 2
    fi
    CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${ids[*]:0:NODE_PROCESSES}")
    export CUDA_VISIBLE_DEVICES
    DEEPSPEED_GPUS=()
  else
    DEEPSPEED_GPUS=(--num_gpus "$NODE_PROCESSES")
  fi
  # This node alone: without --hostfile the runner reads /job/hostfile (DLTS-style clusters write one there) and
  # started the hosts listed there over pdsh. /dev/null is no file: the runner takes the local resources.
  DEEPSPEED_GPUS+=(--hostfile /dev/null)
}

# check_master_port PORT: exit 2, naming MASTER_PORT, unless PORT is a port number (1-65535): the launchers passed
# any number on to every node, whose rendezvous failed on a port that cannot exist.
check_master_port() {
  [[ "$1" =~ ^[1-9][0-9]{0,4}$ ]] && (( $1 <= 65535 )) \
    || { echo "$(basename "$0"): MASTER_PORT=$1 is not a port number (1-65535)" >&2; exit 2; }
}

# local_master_port: sets LOCAL_MASTER_PORT, the rendezvous port of a run on this node alone: MASTER_PORT, else a
# port free here now. The DeepSpeed runner and torchrun rendezvous on 29500 unless told (MASTER_PORT in the
# environment is not read): a second run beside the first (the machine's other GPUs) failed "address already in use".
# A MASTER_PORT that some process here listens on already (another run's rendezvous) is refused before the start:
# torchrun failed on it with an EADDRINUSE traceback, the DeepSpeed launcher's ranks after their imports.
local_master_port() {
  if [[ -z "${MASTER_PORT:-}" ]]; then
    LOCAL_MASTER_PORT=$("$PYTHON" -c 'import socket
with socket.socket() as s:
    s.bind(("", 0)); print(s.getsockname()[1])')
    return 0
  fi
  LOCAL_MASTER_PORT=$MASTER_PORT
  check_master_port "$LOCAL_MASTER_PORT"
  # bound as the rendezvous store binds it (SO_REUSEADDR: a port a finished run left in TIME_WAIT is free)
  "$PYTHON" -c 'import errno, socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("", int(sys.argv[1])))
    except OSError as err:
        sys.exit(3 if err.errno == errno.EADDRINUSE else 0)' "$LOCAL_MASTER_PORT" \
    || { echo "$(basename "$0"): MASTER_PORT=$LOCAL_MASTER_PORT is in use on this machine (another run's" \
              "rendezvous?): choose another port, or unset MASTER_PORT for a free one" >&2; exit 2; }
}

# hostfile_master_port ADDR [ARG...]: sets MASTER_PORT for a hostfile run whose rendezvous host is ADDR. Where ADDR
# is this machine (an address of it binds here: localhost, its name, its IP), the port is chosen and checked as on one
# node (local_master_port): the fixed 29500 made a second multi-node run started from the same first node, or a port
# some process listens on here, fail at the rendezvous on every node after their start-up. Every address ADDR resolves
# to is tried, IPv6 too: an IPv4 socket could not bind ::1 or a v6-only name, and their port went unchecked. A host
# elsewhere: MASTER_PORT, checked to be a port number, else a port derived from the run (this folder, HOSTFILE and
# the run's ARGs, 20000-29999, below Linux's ephemeral ports): only that host could tell which port is free, and the
# fixed 29500 made two runs with the same remote master clash at the rendezvous; the same command gets the same port.
hostfile_master_port() {
  if "$PYTHON" -c 'import socket, sys
try:
    found = socket.getaddrinfo(sys.argv[1], 0, type=socket.SOCK_STREAM)
except OSError:
    sys.exit(1)
for family, kind, proto, _, address in found:
    try:
        with socket.socket(family, kind, proto) as s:
            s.bind(address)
        sys.exit(0)
    except OSError:
        pass
sys.exit(1)' "$1" 2>/dev/null; then
    local_master_port
    MASTER_PORT=$LOCAL_MASTER_PORT
  else
    if [[ -z "${MASTER_PORT:-}" ]]; then
      local sum
      sum=$(printf '%s\0' "$PWD" "${HOSTFILE:-}" "$@" | cksum)
      MASTER_PORT=$(( 20000 + ${sum%% *} % 10000 ))
      echo "$(basename "$0"): rendezvous on $1:$MASTER_PORT (a port derived from this run; set MASTER_PORT to" \
           "choose one free on $1)" >&2
    fi
    check_master_port "$MASTER_PORT"
  fi
}

# read_hostfile FILE: sets HOSTS and HOST_SLOTS, the hosts of a DeepSpeed hostfile and their slots, read as DeepSpeed
# reads it: blank lines and comments (#) skipped, every other line "<hostname> slots=<GPUs>" (at least 1). Checked
# before any node starts: a missing file (DeepSpeed's runner went on "with local resources only"), a wrong line or a
# host listed twice is named with its line; the first host (not the comment a copy of hostfile.example starts with)
# is the default MASTER_ADDR.
read_hostfile() {
  local file=$1 line line_no=0 host me
  me=$(basename "$0")
  [[ -f "$file" ]] || { echo "$me: hostfile $file not found (set HOSTFILE; example:" \
                             "$LAUNCH_DIR/hostfile.example)" >&2; exit 2; }
  HOSTS=() HOST_SLOTS=()
  while IFS= read -r line || [[ -n "$line" ]]; do
    line_no=$((line_no + 1))
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    if ! [[ "$line" =~ ^[[:space:]]*([^[:space:]]+)[[:space:]]+slots=(0*[1-9][0-9]*)([[:space:]]|$) ]]; then
      echo "$me: $file:$line_no: '$line' is not '<hostname> slots=<GPUs on it>'" \
           "(see $LAUNCH_DIR/hostfile.example)" >&2
      exit 2
    fi
    for host in "${HOSTS[@]}"; do
      if [[ "$host" == "${BASH_REMATCH[1]}" ]]; then
        echo "$me: $file:$line_no: host $host is listed twice (one line per node)" >&2
        exit 2
      fi
    done
    HOSTS+=("${BASH_REMATCH[1]}")
    HOST_SLOTS+=("$((10#${BASH_REMATCH[2]}))")  # slots=08 is 8, as DeepSpeed reads it
  done < "$file"
  [[ ${#HOSTS[@]} -ge 1 ]] || { echo "$me: hostfile $file lists no hosts (one line per node:" \
                                     "'<hostname> slots=<GPUs on it>', see $LAUNCH_DIR/hostfile.example)" >&2; exit 2; }
}

# hostfile_per_node [N]: sets PER_NODE, the DeepSpeed runner's options for N processes on every host of the hostfile
# read by read_hostfile (empty N: every host's slots). N is checked against every host's slots: the runner gives each
# host range(N) whatever its slots, so NUM_GPUS=8 started 8 ranks on a `slots=4` node (two a GPU, NCCL failing later).
hostfile_per_node() {
  local n=${1:-} i
  PER_NODE=()
  [[ -n "$n" ]] || return 0
  check_num_gpus "$n"
  for i in "${!HOSTS[@]}"; do
    if (( n > HOST_SLOTS[i] )); then
      echo "$(basename "$0"): NUM_GPUS=$n but the hostfile has ${HOSTS[i]} slots=${HOST_SLOTS[i]}: start at most" \
           "the slots of every host (unset NUM_GPUS: each host's slots)" >&2
      exit 2
    fi
  done
  PER_NODE=(--num_gpus "$n")
}
