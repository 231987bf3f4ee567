"""`config validate` and the pipeline's start check what the recipes would refuse from the config alone.

`config validate` said "ok" for a config whose image encoder was mistyped (`resnet5O`), whose CLIP towers were
asked to unfreeze more blocks than they have, or whose batch could not be split: `train` refused each of them,
after the user had been told the config was fine. A pipeline met the same refusals only at its train stage, after
building shards and running the VLM stages (hours on real data). Both now ask the recipe (`check_config` of the
recipe protocol: the config alone, no data, nothing on disk)."""
from __future__ import annotations


import pytest

from mmlnb_dist.cli import main

BAD = {
    "an unknown image encoder": ("cpu-demo", ["fusion.model.image_encoder.name=resnet5O"],
                                 "fusion.model.image_encoder.name: unknown image encoder 'resnet5O'; did you mean "
                                 "'resnet50'?"),
    "channels-last under ZeRO": ("cpu-demo", ["fusion.channels_last=true", "distributed.zero_stage=2"],
                                 "fusion.channels_last: needs distributed.zero_stage=0"),
    "a registry name without MLflow": ("cpu-demo", ["tracking.backends=[stdout]", "tracking.register_name=nb"],
                                       "tracking.register_name"),
    "an indivisible batch": ("cpu-demo", ["train.global_batch_size=10", "distributed.micro_batch_per_gpu=4"],
                             "train.global_batch_size: global batch 10 is not a multiple of micro batch 4"),
    "an indivisible VLM batch": ("cpu-demo", ["vlm.global_batch_size=6", "vlm.micro_batch_per_gpu=4"],
                                 "vlm.global_batch_size: global batch 6 is not a multiple of micro batch 4"),
    "more CLIP blocks than the towers have": ("clip-multilabel", ["clip.model.towers.unfreeze_blocks=9"],
                                              "clip.model.towers.unfreeze_blocks: 9 blocks asked"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validate_refuses_what_the_recipe_would_refuse(case, capsys):
    profile, overrides, message = BAD[case]
    assert main(["config", "validate", "--config", profile, *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err, err


def test_validate_says_what_it_did_not_check(capsys):
    assert main(["config", "validate", "--config", "cpu-demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: cpu-demo") and "data" in out and "weights" in out, out


def test_validate_checks_the_batch_for_the_world_size_given(capsys):
    overrides = ["train.global_batch_size=12", "distributed.micro_batch_per_gpu=4"]
    assert main(["config", "validate", "--config", "cpu-demo", *overrides]) == 0
    capsys.readouterr()
    assert main(["config", "validate", "--config", "cpu-demo", "--world-size", "2", *overrides]) == 2
    assert "micro batch 4 x world size 2 = 8" in capsys.readouterr().err


def test_every_shipped_profile_validates(capsys):
    from mmlnb_dist.config import shipped_profiles

    for name in shipped_profiles():
        assert main(["config", "validate", "--config", name]) == 0, (name, capsys.readouterr().err)


def test_the_pipeline_refuses_a_bad_training_config_before_its_first_stage(tmp_path, capsys):
    from support.shards import write_described_patches

    patches = write_described_patches(tmp_path / "patches")
    capsys.readouterr()
    code = main(["pipeline", "--patches", str(patches), "--config", "cpu-demo", f"run.output_dir={tmp_path / 'runs'}",
                 f"data.shards={tmp_path / 'shards'}", "fusion.channels_last=true", "distributed.zero_stage=1"])
    err = capsys.readouterr().err
    assert code == 2 and "fusion.channels_last: needs distributed.zero_stage=0" in err.strip().splitlines()[-1], err
    assert not (tmp_path / "shards").exists()
