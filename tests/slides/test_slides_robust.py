"""`slides tile` under bad input, a kill mid-run, and on Ray."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from mmlnb_dist.cli import main

SIDE = 2048


def _write(folder: Path, specs) -> None:
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    for sid, label, kw in specs:
        write_synthetic_slide(folder / f"{sid}.tif", label, width=SIDE, height=SIDE, pool_size=3,
                              downsamples=(1, 4), seed=zlib.crc32(sid.encode()) % 1000, **kw)


def _digest(out: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good_wsi")
    _write(folder, [(f"{label}-{k}", label, {}) for label in ("UD", "PD", "D") for k in range(2)])
    (folder / "labels.csv").write_text(
        "slide_id,label\n" + "".join(f"{label}-{k},{label}\n" for label in ("UD", "PD", "D") for k in range(2)))
    return folder


def test_bad_inputs_are_named_and_the_rest_lands(good, tmp_path, capsys):
    folder = tmp_path / "wsi"
    folder.mkdir()
    for p in good.glob("*.tif"):
        (folder / p.name).symlink_to(p)
    (folder / "corrupt.svs").write_bytes(os.urandom(50_000))  # not a slide at all
    whole = (good / "UD-0.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(whole[: len(whole) // 3])  # a copy cut short
    _write(folder, [("blank", "PD", {"tissue": False})])
    (folder / "stray.tif").symlink_to(good / "PD-0.tif")  # no label
    labels = (good / "labels.csv").read_text() + "corrupt,UD\ntruncated,UD\nblank,PD\nghost,D\n"
    (folder / "labels.csv").write_text(labels)
    out = tmp_path / "shards"
    code = main(["slides", "tile", "--slides", str(folder), "--labels", str(folder / "labels.csv"),
                 "--out", str(out), "--quiet", "slides.sampling.max_tiles_per_slide=5"])
    captured = capsys.readouterr()
    assert code == 1
    for name, status in [("corrupt", "failed"), ("truncated", "failed"), ("blank", "no_tissue"),
                         ("ghost", "missing_slide"), ("stray", "unlabelled")]:
        assert f"{name} ({status})" in captured.err, captured.err
    summary = (out / "qc" / "summary.csv").read_text()
    assert "corrupt.svs" in summary  # the error names the file
    manifest = json.loads((out / "manifest.json").read_text())
    total = sum(s["num_samples"] for s in manifest["splits"].values())
    assert total == 6 * 5  # every good slide landed


def test_usage_errors_exit_2(good, tmp_path, capsys):
    assert main(["slides", "tile", "--slides", str(tmp_path / "nope"), "--labels", str(good / "labels.csv"),
                 "--out", str(tmp_path / "o")]) == 2
    assert main(["slides", "tile", "--slides", str(good), "--labels", str(good / "labels.csv"),
                 "--out", str(tmp_path / "o"), "slides.tile_size=3"]) == 2
    assert "no such folder" in capsys.readouterr().err


def _cli(folder: Path, out: Path, *extra: str):
    return [sys.executable, "-m", "mmlnb_dist.cli", "slides", "tile", "--slides", str(folder), "--labels",
            str(folder / "labels.csv"), "--out", str(out), "--quiet", "slides.sampling.max_tiles_per_slide=null",
            *extra]


# `slides tile` that stages its first slide, then blocks before the second (slides.workers=1 tiles in order in
# this process): the parent kills it there, so exactly one slide is staged whatever the machine's load.
BLOCK_AFTER_FIRST_SLIDE = """
import sys, time
from mmlnb_dist.cli import main
from mmlnb_dist.slides import tiler

real, calls = tiler.process_slide, []

def process_then_block(job):
    if calls:
        time.sleep(3600)  # the parent kills us here, with one slide staged
    calls.append(job)
    return real(job)

tiler.process_slide = process_then_block
sys.exit(main(sys.argv[1:]))
"""


def _staged(slides_dir: Path):
    """The slides staged for good: `<slide>/result.json`, not the `<slide>.tmp/` folder it is written in first (a kill
    between writing its result.json and moving it into place staged nothing, and the rerun tiles it again)."""
    return [p for p in slides_dir.glob("*/result.json") if not p.parent.name.endswith(".tmp")]


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_shards(good, tmp_path):
    reference = tmp_path / "ref"
    subprocess.run(_cli(good, reference), check=True, capture_output=True)
    out = tmp_path / "resumed"
    staged = (tmp_path / "resumed.work") / "slides"
    child = tmp_path / "child.py"
    child.write_text(BLOCK_AFTER_FIRST_SLIDE)
    proc = subprocess.Popen([sys.executable, str(child), *_cli(good, out)[3:]], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300  # a guard against a hang, not the kill window: the file decides
    while not _staged(staged) and proc.poll() is None:
        assert time.monotonic() < deadline, "no slide was staged"
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(_staged(staged))
    assert done == 1, f"{done} slides staged when killed"
    assert not (out / "manifest.json").exists()
    result = subprocess.run(_cli(good, out), check=True, capture_output=True, text=True)
    assert f"resumed: {done} slide(s)" in result.stdout
    assert _digest(out) == _digest(reference)


@pytest.mark.slow
def test_ray_one_task_per_slide(good, tmp_path):
    ray = pytest.importorskip("ray")
    from mmlnb_dist.config import load_config
    from mmlnb_dist.slides.tiler import tile_slides

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = load_config(None, ["slides.ray_address=auto", "slides.sampling.max_tiles_per_slide=5"])
        report = tile_slides(cfg.slides, cfg.data.build, good, good / "labels.csv", tmp_path / "ray", cfg.data.classes,
                             progress=False)
    finally:
        ray.shutdown()
    cfg = load_config(None, ["slides.sampling.max_tiles_per_slide=5"])
    local = tile_slides(cfg.slides, cfg.data.build, good, good / "labels.csv", tmp_path / "local", cfg.data.classes,
                        progress=False)
    assert local.ok
    assert report.ok and [r["kept"] for r in report.results] == [5] * 6
    assert _digest(tmp_path / "ray") == _digest(tmp_path / "local")


def test_synth_command_and_tracking(tmp_path, capsys):
    """`slides synth` writes slides + labels that `slides tile --track` turns into shards, logging QC."""
    folder = tmp_path / "demo"
    assert main(["slides", "synth", "--out", str(folder), "--per-class", "1", "--size", "1024"]) == 0
    assert sorted(p.name for p in folder.glob("*.tif")) == ["synth-D-0.tif", "synth-PD-0.tif", "synth-UD-0.tif"]
    out = tmp_path / "shards"
    code = main(["slides", "tile", "--slides", str(folder), "--labels", str(folder / "labels.csv"), "--out",
                 str(out), "--quiet", "--track", "tracking.backends=[stdout]", "data.build.val_fraction=0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "synth-UD-0" in printed  # the per-slide table; metric records go to metrics.jsonl (the console shows
    # them only with --verbose)
    assert (out / "manifest.json").is_file() and len(list((out / "qc" / "pictures").glob("*.png"))) == 3
    metrics = [json.loads(l) for l in (tmp_path / "shards.work" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["slides/ok"] == 3.0 and metrics[-1]["slides/tiles"] > 0


class _KillsWorker:
    """Unpickling this calls os._exit in the worker: stands in for a decoder segfault on a corrupt slide."""

    def __reduce__(self):
        return (os._exit, (3,))


def test_crashed_worker_loses_only_its_slide(good, tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.slides.slide_task import SlideJob
    from mmlnb_dist.slides.tiler import _pool_results

    cfg = load_config(None, ["slides.sampling.max_tiles_per_slide=3"]).slides
    jobs = [SlideJob(sid, good / f"{sid}.tif", sid.split("-")[0], cfg, tmp_path, "fp")
            for sid in ("UD-0", "PD-0", "D-0")]
    jobs[1].normalizer = _KillsWorker()
    results = {r["slide_id"]: r for r in _pool_results(jobs, 2)}
    assert results["UD-0"]["status"] == results["D-0"]["status"] == "ok"
    assert results["PD-0"]["status"] == "failed" and "worker crashed on PD-0.tif" in results["PD-0"]["error"]
