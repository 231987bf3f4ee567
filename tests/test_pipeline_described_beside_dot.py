"""`pipeline`/`demo` with `data.shards=.` (run from inside the shard set) planned the described set as
`.-described`, a hidden folder inside the input shard set (`..` gave `..-described` in the current folder), as
`describe --shards .` did before; the stage now names it after the set's folder, beside it, as describe does."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline import steps
from mmlnb_dist.pipeline.stages import StageResult


@pytest.mark.parametrize("given", [".", ".."])
def test_the_described_set_of_a_dot_shard_path_lies_beside_the_set(tmp_path, monkeypatch, given):
    inner = tmp_path / "sets" / "nb"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}", f"data.shards={given}", "run.name=demo"])
    shards = StageResult("shards", Path(given), "fp-shards", True, 0.0)
    vlm = StageResult("finetune-vlm", tmp_path / "vlm", "fp-vlm", True, 0.0, {"adapter_dir": "/adapter"})
    out = steps.plan_describe(cfg, vlm, shards).output
    folder = inner if given == "." else inner.parent
    assert out.resolve() == folder.parent / f"{folder.name}-described"
