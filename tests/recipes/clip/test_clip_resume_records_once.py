"""metrics.jsonl of a CLIP run holds each (step, metric) once, and a run killed in its finish (the export) and
resumed writes the records of an uninterrupted one. The finish evaluates `val` again at the last step (with the
best checkpoint) and logged `data/bad_samples/val` a second time there: the uninterrupted file held that record
twice, the resumed one (whose logger keeps one record per step and metric) once, so the two runs' records differed."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from support.clip import caption_shards, clip_config

ARGS = ("train.epochs=2", "train.global_batch_size=8", "train.log_every=1", "data.loader.augment=false")
TIMES = ("train_epoch/epoch_seconds", "train_epoch/samples_per_s")


class Killed(KeyboardInterrupt):
    pass


def _records(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k not in TIMES}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_one_record_per_step_and_metric_and_a_resume_killed_in_the_export_writes_the_same(tmp_path, monkeypatch):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class
    from mmlnb_dist.recipes.clip import export

    shards = caption_shards(tmp_path, n=32, size=32)
    run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, name="ref"))
    reference = _records(tmp_path / "ref")
    counts = Counter((r["step"], k) for r in reference for k in r if k != "step")
    assert [key for key, n in counts.items() if n > 1] == []

    def killed(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(export, "record_export", killed)  # after model.safetensors, before metrics.json
    with pytest.raises(Killed):
        run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, name="r"))
    monkeypatch.undo()
    assert not (tmp_path / "r" / "metrics.json").exists()
    run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, "run.resume=true", name="r"))
    assert sorted(map(json.dumps, _records(tmp_path / "r"))) == sorted(map(json.dumps, reference))
    assert (tmp_path / "r" / "export" / "model.safetensors").read_bytes() == \
        (tmp_path / "ref" / "export" / "model.safetensors").read_bytes()
