"""`evaluate --checkpoint` with a profile (`--config`, to evaluate on other data) built the model from the
profile's `fusion.model` and image size: a run trained with overrides that leave the weights' shapes alone
(text pooling, token limit, fixed alpha, image size) was evaluated as another model, and its metrics were
silently wrong. The checkpoint holds weights only; the run's `config.yaml` beside it says what model they are."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.cli import main
from support.fusion import CPU_DEMO, make_shards, tiny_config

TRAINED_WITH = ["fusion.model.text_encoder.pooling=cls", "fusion.model.text_encoder.max_length=24",
                "data.loader.image_size=32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    root = tmp_path_factory.mktemp("ckpt-settings")
    shards = make_shards(root, n=60, size=32)
    result = run(FusionRecipe, tiny_config(shards, root / "runs", "overridden", ["train.epochs=1", *TRAINED_WITH]))
    return {"shards": shards, "ckpt": root / "runs" / "overridden" / "checkpoints", "result": result}


def _evaluate(capsys, *args):
    assert main(["evaluate", *args, "tracking.backends=[stdout]", "data.loader.num_workers=0", "--json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out[out.out.index("{"):]), out.err


def test_a_profile_on_the_command_line_evaluates_the_model_the_run_trained(trained, capsys):
    got, err = _evaluate(capsys, "--config", str(CPU_DEMO), f"data.shards={trained['shards']}",
                         "--checkpoint", str(trained["ckpt"]))
    for key in ("loss", "balanced_accuracy", "accuracy"):
        assert got[key] == pytest.approx(trained["result"][f"val/{key}"], abs=1e-6), key
    # and says where the model settings came from, and which differ from the profile's
    assert "config.yaml" in err and "fusion.model.text_encoder.pooling=cls" in err, err


def test_a_checkpoints_folder_without_its_run_config_is_evaluated_with_a_warning(trained, capsys, tmp_path):
    import shutil

    alone = tmp_path / "copied" / "checkpoints"
    shutil.copytree(trained["ckpt"], alone)  # the checkpoints folder copied away from its run folder
    got, err = _evaluate(capsys, "--config", str(CPU_DEMO), f"data.shards={trained['shards']}", *TRAINED_WITH,
                         "--checkpoint", str(alone))
    assert got["loss"] == pytest.approx(trained["result"]["val/loss"], abs=1e-6)
    assert "no config.yaml" in err and "must be the ones it was trained with" in err, err


def test_a_shard_set_with_the_classes_in_another_order_is_refused(trained, capsys, tmp_path):
    import shutil

    other = tmp_path / "reordered"
    shutil.copytree(trained["shards"], other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["classes"] = manifest["classes"][::-1]  # the same names: index 0 would be read as the last class
    (other / "manifest.json").write_text(json.dumps(manifest))
    code = main(["evaluate", "--config", str(CPU_DEMO), f"data.shards={other}", "tracking.backends=[stdout]",
                 "--checkpoint", str(trained["ckpt"])])
    err = capsys.readouterr().err
    assert code == 2 and "was trained on the classes ['UD', 'PD', 'D']" in err and "['D', 'PD', 'UD']" in err, err
