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
# SIGTERM 5 s or more after the first stops the ranks at once).
run_launcher() {
  _LAUNCHER_SIGNAL="" _LAUNCHER_PID=""
  trap '_forward_to_launcher TERM' TERM
  trap '_forward_to_launcher INT' INT
  trap '_forward_to_launcher TERM' HUP  # a closed terminal: the graceful stop
  set -m  # the job gets a process group of its own (pgid = its pid) and the default SIGINT / SIGQUIT handlers
  "$@" &  # (the child does not keep the traps: it execs with the default handlers)
  _LAUNCHER_PID=$!
  set +m
  [[ -z "$_LAUNCHER_SIGNAL" ]] || _forward_to_launcher "$_LAUNCHER_SIGNAL"  # came before the launcher started
  local rc=0
  wait "$_LAUNCHER_PID" || rc=$?
  if [[ -n "$_LAUNCHER_SIGNAL" ]]; then
    # The runner may be gone already (no handler: the signal ended it) while the ranks still save their step.
    while kill -0 -- "-$_LAUNCHER_PID" 2>/dev/null; do
      sleep 0.5 &
      wait $! || true
    done
    wait "$_LAUNCHER_PID" 2>/dev/null || true
    echo "$(basename "$0"): stopped by SIG$_LAUNCHER_SIGNAL (forwarded to the launcher and the ranks)" >&2
    exit 130
  fi
  exit "$rc"
}

_forward_to_launcher() {
  _LAUNCHER_SIGNAL=$1
  [[ -n "$_LAUNCHER_PID" ]] || return 0
  kill -s "$1" -- "-$_LAUNCHER_PID" 2>/dev/null || kill -s "$1" "$_LAUNCHER_PID" 2>/dev/null || true
}
