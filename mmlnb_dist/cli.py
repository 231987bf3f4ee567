"""The `mmlnb-dist` console script. Subcommands only parse arguments and call library functions/recipes.

Each subcommand lives in `mmlnb_dist/commands/<name>.py` as a `register(subparsers)` function; heavy
imports (torch, deepspeed, mlflow, ray) happen inside the handlers so that `--help` stays fast.
"""
from __future__ import annotations

import argparse
import atexit
import errno
import importlib
import logging
import os
import sys
from typing import List, Optional

from .core.errors import UserError

# Order is the order in `mmlnb-dist --help`.
COMMAND_MODULES = [
    "pipeline",
    "demo",
    "config_cmd",
    "data",
    "shards",
    "slides",
    "train",
    "vlm",
    "tracking",
    "tune",
    "ablate",
    "features",
]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that leaves in the namespace (`command_parser`) the innermost (sub)command's parser which
    parsed the line: the one whose usage an unknown argument is reported under. Subparsers are made of this class
    too (`add_subparsers` makes them of the parent's type); the innermost one returns first and the outer ones
    keep its value."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extra = super().parse_known_args(args, namespace)
        if getattr(namespace, "command_parser", None) is None:
            namespace.command_parser = self
        return namespace, extra


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mmlnb-dist",
        description="Distributed multi-modal histopathology classification (MMLNB: VLM descriptions + "
        "PRMF fusion). Every subcommand has --help.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"mmlnb-dist {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show DEBUG records on the console (every logged metric step, full per-epoch "
                        "tables); without it the console keeps one line per epoch and the log file keeps all")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"mmlnb_dist.commands.{name}").register(sub)
    return parser


def parse_arguments(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse a command line. `key=value` overrides may also follow the subcommand's options
    (`pipeline --config P --from train train.epochs=2`): argparse fills the `overrides` positional with the
    first run of them only, so the later ones are appended here, in order. Anything else left over is an error,
    under the usage of the (sub)command given it, with the override meant when it was spelled as a flag."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command_parser = vars(args).pop("command_parser", None) or parser
    takes_overrides = isinstance(getattr(args, "overrides", None), list)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if overrides and takes_overrides:
        args.overrides.extend(overrides)
        extra = [a for a in extra if a not in overrides]
    if extra:
        meant = _overrides_meant(extra, sys.argv[1:] if argv is None else argv) if takes_overrides else []
        hint = f" (config overrides are key=value words, without dashes: {' '.join(f'`{m}`' for m in meant)})"
        command_parser.error(f"unrecognized arguments: {' '.join(extra)}" + (hint if meant else ""))
    return args


def _overrides_meant(extra: List[str], line: List[str]) -> List[str]:
    """The `key=value` overrides that unknown flags spelled as dotted keys stand for: `--train.epochs=3` and
    `--train.epochs 3` mean `train.epochs=3` (the value is the word after the flag on the command line)."""
    meant = []
    for word in extra:
        key, has_value, value = word.lstrip("-").partition("=")
        if not word.startswith("--") or "." not in key or not key.replace(".", "").replace("_", "").isalnum():
            continue
        if not has_value:
            at = line.index(word) + 1 if word in line else len(line)
            following = line[at] if at < len(line) else ""
            value = following if following and not following.startswith("-") and "=" not in following else "VALUE"
        meant.append(f"{key}={value}")
    return meant


def main(argv: Optional[List[str]] = None) -> int:
    import logging

    from .core.distributed import DistEnv
    from .core.logging import setup_logging
    from .core.signals import sigterm_as_interrupt

    args = parse_arguments(argv)

    try:
        setup_logging(DistEnv.from_environment().rank, logging.DEBUG if args.verbose else logging.INFO)
        # A scheduler's SIGTERM ends every command as Ctrl-C does: `finally` blocks run (locks, stage records)
        # and the exit code is 130. Training asks for more inside (`core.signals.GracefulStop`).
        with sigterm_as_interrupt():
            code = args.func(args)
    except UserError as err:
        print(f"mmlnb-dist {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from .core.progress import close_open_bars

        close_open_bars()  # a command that logged nothing while unwinding: its bars end above this line
        print(f"mmlnb-dist {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not stdout_closed():  # another pipe (a socket) broke: not the reader of the output
            raise
        return 141  # as a program that SIGPIPE stopped (`yes | head`)
    except RuntimeError as err:  # torch.OutOfMemoryError (CUDA) and the CPU allocator's error are RuntimeErrors
        if not out_of_memory(err):
            raise
        print(f"mmlnb-dist {args.command}: error: out of memory ({str(err).splitlines()[0][:200]}). Lower what one "
              f"step holds: {MEMORY_SETTINGS.get(args.command, ALL_MEMORY_SETTINGS)}; then run the same command "
              f"again (with run.resume=true for train and finetune-vlm)", file=sys.stderr)
        return 1
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        where = f" writing {err.filename}" if err.filename else ""
        print(f"mmlnb-dist {args.command}: error: {(err.strerror or 'disk full').lower()}{where}. Free space on that "
              f"filesystem (or point the output elsewhere), then run the same command again (with run.resume=true "
              f"for train and finetune-vlm): the pipeline, shards build, describe and predict continue where they "
              f"stopped", file=sys.stderr)
        return 1
    return int(code or 0)


def stdout_closed() -> bool:
    """Whether the reader of stdout has gone (`config explain | head -c 100`, a pager quit early); then stdout writes
    to /dev/null from here, so that the interpreter's last flush does not fail once more at exit."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a file (a test's capture)
        return False
    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    if not any(events & select.POLLERR for _, events in poll.poll(0)):  # a pipe without a reader: POLLERR
        return False
    os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return True


def out_of_memory(err: BaseException) -> bool:
    """torch's CUDA out-of-memory error, or its CPU allocator's (a RuntimeError naming it)."""
    text = str(err)
    return type(err).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text


TRAIN_MEMORY = ("distributed.micro_batch_per_gpu (fewer samples per forward pass: the global batch stays, gradient "
                "accumulation grows), train.eval_batch_size, distributed.zero_stage=2 or 3 with "
                "distributed.offload_optimizer=true, distributed.precision=bf16")
VLM_MEMORY = ("vlm.micro_batch_per_gpu, vlm.max_pixels (fewer image tokens), vlm.gradient_checkpointing=true, "
              "distributed.zero_stage=3 with distributed.offload_optimizer=true")
DESCRIBE_MEMORY = "vlm.generation.batch_size, vlm.max_pixels"
MEMORY_SETTINGS = {"train": TRAIN_MEMORY, "evaluate": "train.eval_batch_size", "finetune-vlm": VLM_MEMORY,
                   "describe": DESCRIBE_MEMORY, "predict": "--batch-size, --chunk-size, and with --vlm vlm.generation.batch_size=N",
                   "features": "--batch-size"}
"""The settings that lower what one step of a command holds in memory, named when it runs out."""
ALL_MEMORY_SETTINGS = f"for training {TRAIN_MEMORY}; for VLM fine-tuning {VLM_MEMORY}; for describe {DESCRIBE_MEMORY}"
"""Commands that run several of them (pipeline, demo, tune, ablate) or other work."""

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
"""OSError numbers of a full disk or an exhausted quota: one line naming the file, not a library's traceback."""


def console() -> None:
    """The program `mmlnb-dist` (and `python -m mmlnb_dist.cli`, which the launch scripts run): `main`, then, when
    the command succeeded, the end of this process's process groups and of the process, without the interpreter's
    teardown.

    NCCL prints "destroy_process_group() was not called before program exit" under every GPU run unless the groups
    are ended. Ending them is not enough: DeepSpeed keeps them referenced (its module-level world group, the engine's
    parameters), so gloo's threads still run when the interpreter tears itself down, and a rank that finished its
    work could abort there ("terminate called without an active exception", exit code -6): the launcher then reports
    the whole run failed (seen in CI under 2-rank torchrun runs: the Slurm test, VLM ZeRO-3). So a process that had
    groups leaves once the exit handlers have run (MLflow's, logging's), before the teardown. A failed command skips
    both: destroying groups while other ranks are still inside a collective can hang. Not inside `main`: tests call
    it many times in one process, and DeepSpeed keeps its groups at module level for the next engine."""
    leave_with = []
    # registered before the command imports anything: exit handlers run last-registered first, so this runs after
    # the command's (MLflow's); only logging's, imported with this module, comes earlier, and this runs it
    atexit.register(_leave_before_teardown, leave_with)
    code = main()
    if code == 0 and "torch.distributed" in sys.modules:  # nothing to end when no command imported torch (--help)
        from .core.distributed import destroy_process_group

        if destroy_process_group():
            leave_with.append(code)
    sys.exit(code)


def _leave_before_teardown(leave_with: List[int]) -> None:
    """The end of a process whose command succeeded with process groups: the other exit handlers have run."""
    if not leave_with:
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(leave_with[0])


if __name__ == "__main__":
    console()
