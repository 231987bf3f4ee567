"""The pipeline registers its model under `tracking.register_name`, else `run.name`; a `run.name` the registry
refuses (`exp:1`, a fine folder name) was accepted, and the register stage failed on it after the whole training.
It is now refused before the first stage, naming run.name and how to give a valid name, when the register stage
is in the run and no `tracking.register_name` is given."""
from __future__ import annotations

from support.cli import run_cli


def _into(tmp_path):
    """Every folder a pipeline writes, under `tmp_path`; a small synthetic set, so that a pipeline that is not
    refused stops soon (`--until synth`)."""
    return [f"run.output_dir={tmp_path / 'runs'}", f"data.synth_dir={tmp_path / 'src'}",
            f"data.shards={tmp_path / 'shards'}", "data.synth.n=30", "data.synth.n_slides=6"]


def test_a_run_name_the_registry_refuses_is_refused_before_the_first_stage(tmp_path):
    for name in ("exp:1", "2024:lr=3e-4"):
        code, _, err = run_cli(["demo", f"run.name={name}", *_into(tmp_path)])
        assert code == 2 and "Traceback" not in err, err
        assert f"run.name '{name}'" in err and "tracking.register_name=" in err, err
        assert not any(tmp_path.iterdir())


def test_the_suggested_register_name_is_one_the_registry_takes(tmp_path):
    code, _, err = run_cli(["demo", "run.name=exp:1", *_into(tmp_path)])
    assert code == 2 and "tracking.register_name=exp-1" in err, err


def test_with_a_register_name_the_run_name_is_not_the_registered_name(tmp_path):
    """Refused then by the next check (no shard set at data.shards), not for the run name."""
    code, _, err = run_cli(["pipeline", "--config", "clip-demo", "run.name=exp:1", "tracking.register_name=nb",
                            *_into(tmp_path)])
    assert code == 2 and "no shard set there" in err and "run.name" not in err, err


def test_without_the_register_stage_the_run_name_is_not_checked(tmp_path):
    code, _, err = run_cli(["demo", "--until", "synth", "run.name=exp:1", *_into(tmp_path)])
    assert code == 0, err
    assert (tmp_path / "runs" / "exp:1-pipeline").is_dir()
