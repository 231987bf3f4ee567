"""`predict --model` naming a local folder that is no MLflow model (no MLmodel) says so, and for a training run
folder how to make one: given `runs/r1`, it said the folder held a checkpoint "that would be unpickled to load"
and advised to "remove the file", i.e. to delete the run's checkpoint."""
from __future__ import annotations

import pytest

from mmlnb_dist.predict.errors import ModelNotFound
from mmlnb_dist.predict.model import load_model


def _run_folder(root):
    run = root / "runs" / "r1"
    (run / "checkpoints" / "epoch-0000").mkdir(parents=True)
    (run / "checkpoints" / "epoch-0000" / "mp_rank_00_model_states.pt").write_bytes(b"\x80\x04.")
    (run / "export").mkdir()
    (run / "export" / "model_config.json").write_text("{}")
    (run / "config.yaml").write_text("run: {name: r1}\n")
    return run


def test_a_run_folder_is_answered_with_how_to_register_it(tmp_path):
    run = _run_folder(tmp_path)
    with pytest.raises(ModelNotFound, match="training run folder") as err:
        load_model(str(run))
    assert f"mmlnb-dist register --run {run} --name NAME" in str(err.value)
    assert "remove" not in str(err.value)
    assert (run / "checkpoints" / "epoch-0000" / "mp_rank_00_model_states.pt").is_file()


def test_another_folder_without_mlmodel_is_not_a_model(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "weights.pt").write_bytes(b"\x80\x04.")
    with pytest.raises(ModelNotFound, match=r"no MLmodel file: not an MLflow model folder") as err:
        load_model(str(tmp_path / "stuff"))
    assert "remove" not in str(err.value)
