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
