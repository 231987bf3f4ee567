"""`demo --recipe clip-multilabel --config cpu-demo`: --config picks the profile, and the profile's recipe (fusion)
ran in place of the asked-for one, silently (the report's heading said "(fusion)" after minutes of work). A
--recipe that the config's train.recipe contradicts is refused before any stage runs; --recipe alone, or --config
alone, keep working as before."""
from __future__ import annotations

import contextlib
import io

import pytest

from mmlnb_dist.cli import main


def _run(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue() + err.getvalue()


@pytest.mark.parametrize("config, recipe", [("cpu-demo", "clip-multilabel"), ("clip-demo", "mmlnb")])
def test_a_recipe_the_config_contradicts_is_refused_before_any_stage(tmp_path, config, recipe):
    args = ["demo", "--config", config, "--recipe", recipe, "--until", "synth", f"run.output_dir={tmp_path / 'runs'}",
            f"data.synth_dir={tmp_path / 'src'}", f"data.shards={tmp_path / 'shards'}"]
    code, out = _run(args)
    assert code == 2, out
    assert f"--recipe {recipe}" in out and "train.recipe" in out and config in out, out
    assert not (tmp_path / "src").exists() and not (tmp_path / "runs").exists()


def test_a_config_without_recipe_and_a_matching_recipe_are_accepted(monkeypatch):
    """The check picks nothing else: --config alone runs its own recipe, a --recipe that matches it is fine."""
    import mmlnb_dist.commands.pipeline as pipeline_command

    seen = []
    monkeypatch.setattr(pipeline_command, "run_command", lambda args, cfg: seen.append(cfg.train.recipe) or 0)
    assert main(["demo", "--config", "clip-demo"]) == 0
    assert main(["demo", "--config", "clip-demo", "--recipe", "clip-multilabel"]) == 0
    assert main(["demo", "--recipe", "clip-multilabel"]) == 0
    assert main(["demo"]) == 0
    assert seen == ["clip", "clip", "clip", "fusion"]
