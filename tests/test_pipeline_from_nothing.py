"""`pipeline --from train` (or `demo --from describe`) into a fresh output folder: the stages before --from never
ran, and the pipeline refused that only once it was running, after its log file was opened, so a command that did
nothing left `<run.name>-pipeline/pipeline.log` behind. The first stage's output is now checked with the other
refusals before the first stage: nothing is written."""
from __future__ import annotations

import pytest

from support.cli import run_cli


def _into(tmp_path):
    return [f"run.output_dir={tmp_path / 'runs'}", f"data.synth_dir={tmp_path / 'src'}",
            f"data.shards={tmp_path / 'shards'}", "data.synth.n=30", "data.synth.n_slides=6"]


@pytest.mark.parametrize("first", ["shards", "train", "register"])
def test_from_a_stage_whose_earlier_stages_never_ran_writes_nothing(tmp_path, first):
    code, _, err = run_cli(["demo", "--recipe", "clip-multilabel", "--from", first, *_into(tmp_path)])
    assert code == 2, err
    assert f"--from {first}: the output of the earlier stage 'synth'" in err and "is missing" in err, err
    assert not any(tmp_path.iterdir()), sorted(tmp_path.rglob("*"))


def test_from_shards_with_patches_that_were_never_built(tmp_path):
    patches = tmp_path / "patches"
    (patches / "UD").mkdir(parents=True)
    code, _, err = run_cli(["pipeline", "--config", "cpu-demo", "--patches", str(patches), "--from", "train",
                            *_into(tmp_path)])
    assert code == 2 and "--from train: the output of the earlier stage 'shards'" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patches"]
