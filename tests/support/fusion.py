"""Tiny synthetic shard sets and configs for the fusion tests (shared by tests/recipes/fusion/test_fusion_*.py
and tests/drills/test_drill_train.py), and readers of what a fusion run leaves on disk."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from mmlnb_dist.config import BuildConfig, Config, load_config

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "mmlnb_dist" / "profiles" / "cpu-demo.yaml"


def make_shards(root: Path, n: int = 150, size: int = 64, seed: int = 0, test_fraction: float = 0.0) -> Path:
    """`n` synthetic patches at `size` px -> shards in `root/shards` (train/val, optional test)."""
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset

    src = root / "src"
    make_synthetic_dataset(src, n=n, size=size, n_slides=12, noisy_description_rate=0.2, seed=seed)
    build = BuildConfig(max_samples_per_shard=40, val_fraction=0.25, test_fraction=test_fraction,
                        image_format="png", image_size=size, seed=seed)
    out = root / "shards"
    build_shards(collect_samples(src, CLASSES), out, build, CLASSES, progress=False)
    return out


def tiny_config(shards: Path, run_root: Path, name: str, extra: List[str] = ()) -> Config:
    """The cpu-demo profile on `shards`, stdout logging only, 0 loader workers (fast start in tests)."""
    overrides = [
        f"data.shards={shards}", f"run.output_dir={run_root}", f"run.name={name}",
        "tracking.backends=[stdout]", "data.loader.num_workers=0", "data.loader.image_size=64",
        # the profile augments (flips + stain jitter); these tests pin caching and bit-exact runs without it
        "data.loader.augment=false",
        *extra,
    ]
    return load_config(CPU_DEMO, overrides)


def registered_model(root: Path, name: str) -> Dict[str, Any]:
    """A fusion model of 1 epoch on 45 patches' reference descriptions, tracked in `root/runs/mlflow.db` and
    registered as `models:/<name>@champion` (for `predict`): {root, shards, uri, n_val}."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.pyfunc_model import register_run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards = make_shards(root, n=45, size=32)
    cfg = tiny_config(shards, root / "runs", name, ["tracking.backends=[mlflow]", "train.epochs=1",
                                                   "data.loader.image_size=32"])
    run(FusionRecipe, cfg)
    uri = f"sqlite:///{(root / 'runs' / 'mlflow.db').resolve()}"
    run_id = json.loads((root / "runs" / name / "tracking" / "train.json").read_text())["run_id"]
    register_run(run_id, name, alias="champion", tracking_uri=uri, metric="best/val/balanced_accuracy", mode="max")
    n_val = json.loads((shards / "manifest.json").read_text())["splits"]["val"]["num_samples"]
    return {"root": root, "shards": shards, "uri": uri, "n_val": n_val}


def epoch_records(run_dir: Path) -> List[Dict[str, float]]:
    """The per-epoch training summaries a run logged (`<run_dir>/metrics.jsonl`, written by the stdout logger;
    keys `train_epoch/...`), oldest epoch first, each with its `epoch` (from the validation record that follows it;
    eval_every=1). A resumed run's file holds each epoch once."""
    by_epoch: Dict[int, Dict[str, float]] = {}
    pending = None
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "train_epoch/phase" in record:
            pending = record
        elif "epoch" in record and pending is not None:
            assert int(record["epoch"]) not in by_epoch, f"epoch {record['epoch']} logged twice"
            by_epoch[int(record["epoch"])] = {**pending, "epoch": int(record["epoch"])}
            pending = None
    return [by_epoch[e] for e in sorted(by_epoch)]


def checkpoint_weights(ckpt_dir: Path, tag: str):
    """A checkpoint's consolidated fp32 module weights (and buffers), read without building an engine."""
    from mmlnb_dist.core.checkpoint import fp32_state_dict_from_checkpoint

    got, state = fp32_state_dict_from_checkpoint(Path(ckpt_dir), tag)
    assert got == tag
    return state


# -- killing `train` at an exact point ---------------------------------------------------------------------------
# A child started with `gated_train_command` runs the real CLI (`mmlnb_dist.cli.main`) with one test hook: when it
# reaches the point named in its environment it writes `<gate>/reached` and waits there until it is killed. The
# parent waits for that file (not for time) and sends SIGKILL, so the kill lands exactly there however loaded the
# machine is. Points: "saved:epoch-0002" (just after that checkpoint is complete and `latest` names it) and
# "saving:epoch-0002" (during that save: DeepSpeed's files are in `checkpoints/.partial-epoch-0002/`, no checksums
# recorded, nothing renamed). `predict`: "journaled:2" (just after its second chunk is in `<out>.resume/`).
# "sigterm:7" sends the child SIGTERM as it logs optimizer step 7 (it then stops by itself: nothing to wait for);
# "sigterm-group:7" sends it to the child's whole process group (start the child with start_new_session=True);
# "sigusr1:7", "sigusr1-group:7" (USR2 likewise) send a scheduler's warning signal instead.
GATE_ENV, GATE_AT_ENV = "MMLNB_TEST_KILL_GATE", "MMLNB_TEST_KILL_AT"
_GATE_BOOT = ("import sys; sys.path.insert(0, {tests!r}); from support.fusion import run_gated_cli; "
              "sys.exit(run_gated_cli(sys.argv[1:]))")


def gated_train_command(python: str, args: List[str]) -> List[str]:
    """`python -m mmlnb_dist.cli <args>` with the kill gate installed (armed by the environment, see above)."""
    return [python, "-c", _GATE_BOOT.format(tests=str(ROOT / "tests")), *args]


def gate_env(env: Dict[str, str], gate: Path, at: str) -> Dict[str, str]:
    return {**env, GATE_ENV: str(gate), GATE_AT_ENV: at}


def _wait_at_gate(gate: Path, where: str) -> None:
    import threading

    gate.mkdir(parents=True, exist_ok=True)
    (gate / "reached.tmp").write_text(where)
    (gate / "reached.tmp").replace(gate / "reached")
    # Wait to be killed. The bound only keeps an orphan (its test died) from living forever; it decides nothing.
    threading.Event().wait(900)
    import os

    os._exit(99)


def run_gated_cli(argv: List[str]) -> int:
    import os

    from mmlnb_dist import cli
    from mmlnb_dist.core import checkpoint

    gate, at = os.environ.get(GATE_ENV), os.environ.get(GATE_AT_ENV, "")
    if gate:
        kind, _, tag = at.partition(":")
        if kind == "saved":
            save = checkpoint.CheckpointManager.save

            def save_then_wait(self, engine, tag_now, *args, **kwargs):
                out = save(self, engine, tag_now, *args, **kwargs)
                if tag_now == tag:
                    _wait_at_gate(Path(gate), at)
                return out

            checkpoint.CheckpointManager.save = save_then_wait
        elif kind == "saving":
            record = checkpoint.record_checksums

            def wait_in_save(tag_dir):
                if Path(tag_dir).name == checkpoint.PARTIAL + tag:
                    _wait_at_gate(Path(gate), at)
                return record(tag_dir)

            checkpoint.record_checksums = wait_in_save
        elif kind == "journaled":
            from mmlnb_dist.predict.journal import PredictJournal

            append, appended = PredictJournal.append, []

            def append_then_wait(self, *args, **kwargs):
                append(self, *args, **kwargs)
                appended.append(1)
                if len(appended) == int(tag):
                    _wait_at_gate(Path(gate), at)

            PredictJournal.append = append_then_wait
        elif kind.split("-")[0] in ("sigterm", "sigusr1", "sigusr2"):  # a scheduler's signal at step <tag>
            import signal
            import threading

            from mmlnb_dist.core.tracking import loggers

            log_metrics = loggers.MultiLogger.log_metrics
            name = kind.split("-")[0][3:].upper()

            def log_then_signal(self, metrics, step):
                log_metrics(self, metrics, step)
                if step == int(tag) and "train/loss" in metrics:
                    if not kind.endswith("-group"):
                        signal.pthread_kill(threading.get_ident(), getattr(signal, "SIG" + name))
                    else:  # to every process of the job, loader workers too, from outside as Slurm does
                        import subprocess  # (the child runs with start_new_session=True: its group is the job)

                        subprocess.run(["kill", f"-{name}", "--", f"-{os.getpgid(0)}"], check=False)

            loggers.MultiLogger.log_metrics = log_then_signal
        else:
            raise ValueError(f"{GATE_AT_ENV}={at!r}: expected saved:<tag>, saving:<tag>, journaled:<chunks>, "
                             f"sig{{term,usr1,usr2}}[-group]:<step>")
    return cli.main(argv)


def wait_for_gate(proc, gate: Path) -> str:
    """Wait until the child `proc` (started with `gate_env`) reports the gate reached (it then waits to be
    killed); returns the point reached. Fails if the child exits first (the run ended before the point)."""
    import subprocess

    reached = gate / "reached"
    while not reached.exists():
        try:
            proc.wait(timeout=0.05)  # the loop polls the file; the kill point is the file, not a time
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the run exited (code {proc.returncode}) before reaching the kill point")
    return reached.read_text()


def kill_at_gate(proc, gate: Path) -> str:
    """`wait_for_gate`, then SIGKILL the child; returns the point reached."""
    import signal

    where = wait_for_gate(proc, gate)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return where
