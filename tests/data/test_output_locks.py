"""One job per output folder: a second shard build, describe or slide tiling into a folder another live process
holds stops at once with FolderInUseError naming the folder and the holder's pid, and writes nothing."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmlnb_dist.core.runlock import FolderInUseError
from mmlnb_dist.data.build import build_shards
from mmlnb_dist.data.config import BuildConfig

from support.shards import CLASSES, specs_for, write_patch_folder

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from pathlib import Path
from mmlnb_dist.core.runlock import FolderLock
folder, ready, release = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
with FolderLock(folder, "other job"):
    ready.write_text("held")
    while not release.exists():
        time.sleep(0.05)
"""


class Holder:
    """Another process holding `folder` until the test ends (it polls for a release file)."""

    def __init__(self, tmp: Path, folder: Path):
        self.ready, self.release = tmp / f"{folder.name}.ready", tmp / f"{folder.name}.release"
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(self.ready), str(self.release)],
                                     cwd=ROOT)
        while not self.ready.exists():  # wait for the file that says the lock is held
            assert self.proc.poll() is None, "holder process died"
            time.sleep(0.05)

    def __enter__(self) -> "Holder":
        return self

    def __exit__(self, *exc) -> None:
        self.release.write_text("")
        self.proc.wait(timeout=30)


def _build(src: Path, out: Path, **kw):
    return build_shards(specs_for(src), out, BuildConfig(max_samples_per_shard=4, image_format="png", image_size=24),
                        CLASSES, progress=False, **kw)


def test_second_shard_build_into_a_held_folder_stops_naming_folder_and_pid(tmp_path):
    src = write_patch_folder(tmp_path / "src", per_class=3)
    out = tmp_path / "out"
    with Holder(tmp_path, out) as holder:
        with pytest.raises(FolderInUseError, match=rf"{out}.*other job.*pid {holder.proc.pid}"):
            _build(src, out)
        assert not list(out.glob("*.tar")) and not (out / "manifest.json").exists()
    manifest = _build(src, out)  # free again: builds, and a rebuild over it replaces it in place
    assert manifest["splits"]["train"]["num_samples"] + manifest["splits"]["val"]["num_samples"] == 9
    _build(src, out)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".lock")) == \
        sorted(["manifest.json", "sizes.json", *(e["file"] for s in manifest["splits"].values() for e in s["shards"])])


def test_describe_into_a_held_folder_stops_before_any_work(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.vlm.describe import run_describe

    from support.shards import make_shard_set

    shards = make_shard_set(tmp_path, per_class=2)
    out = tmp_path / "described"
    cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml", ["tracking.backends=[stdout]",
                                                               f"run.output_dir={tmp_path / 'runs'}"])
    with Holder(tmp_path, out) as holder:
        with pytest.raises(FolderInUseError, match=rf"{out}.*pid {holder.proc.pid}"):
            run_describe(cfg, "tiny", None, shards, out, progress=False)
    assert not list(out.glob("*.tar")) and not (out / ".progress").exists()


def test_slide_tiling_into_a_held_folder_stops_before_any_work(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, [])
    out = tmp_path / "tiles"
    with Holder(tmp_path, out) as holder:
        with pytest.raises(FolderInUseError, match=rf"{out}.*pid {holder.proc.pid}"):
            tile_slides(cfg.slides, cfg.data.build, tmp_path / "no-slides", tmp_path / "labels.csv", out, CLASSES,
                        progress=False)
    assert not (tmp_path / "tiles.work").exists()
