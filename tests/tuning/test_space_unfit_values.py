"""The shipped clip space offers `clip.model.fusion: sum`, which needs equal image and text widths; on the
clip-demo encoders (EfficientNet-Lite0 1280, MiniLM 384) every trial drawing it failed inside Ray. The search now
leaves such values out before Ray starts, naming each and why, and refuses a key none of whose values builds."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.recipes.clip.variants import unfit
from mmlnb_dist.tuning.checks import SearchError, default_space
from mmlnb_dist.tuning.fit import leave_out_unfit_values
from mmlnb_dist.tuning.space import apply_params, load_space, resolve_space


def _base(profile: str):
    return load_config(profile, ["tune.recipe=clip", "tune.metric=val/micro_f1"]).model_dump(mode="json")


@pytest.mark.parametrize("profile", ["clip-demo", "clip-multilabel"])
def test_every_value_the_shipped_clip_space_keeps_builds_on_its_profile(profile, caplog):
    from mmlnb_dist.config import config_from_dict

    base, path = _base(profile), resolve_space(default_space("clip"))
    space = load_space(path, base)
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.tuning.fit"):
        kept = leave_out_unfit_values(space, base, "clip", path)
    for key, entry in kept.items():
        for value in entry.get("choice", entry.get("grid", [])):
            assert unfit(config_from_dict(apply_params(base, {key: value}, kept)[0], "t")) is None, (key, value)
    fusion = kept["clip.model.fusion"]["choice"]
    if profile == "clip-demo":  # unequal encoder widths: sum left out, and said so
        assert fusion == ["concat", "prmf"], fusion
        said = [r.getMessage() for r in caplog.records]
        assert any("'clip.model.fusion' choice value sum left out" in m and "equal image and text widths" in m
                   for m in said), said
    else:  # the tiny CLIP towers share a width: sum stays
        assert fusion == ["concat", "sum", "prmf"], fusion


def test_a_key_with_no_value_that_builds_is_refused_naming_it(tmp_path):
    base = _base("clip-demo")
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  clip.model.fusion: {choice: [sum]}\n")
    with pytest.raises(SearchError, match=r"no 'clip.model.fusion' choice value builds a model on this config: "
                                          r"sum: clip.model.fusion: sum needs equal image and text widths"):
        leave_out_unfit_values(load_space(path, base), base, "clip", path)


def test_config_validate_refuses_a_space_none_of_whose_values_builds(tmp_path, monkeypatch, capsys):
    """`tune` refused it before Ray started, but `config validate` of the same config said "ok"."""
    from mmlnb_dist.cli import main

    (tmp_path / "space.yaml").write_text("params:\n  clip.model.fusion: {choice: [sum]}\n")
    monkeypatch.chdir(tmp_path)
    code = main(["config", "validate", "--config", "clip-demo", "tune.recipe=clip", "tune.metric=val/micro_f1",
                 "tune.space=space.yaml"])
    err = capsys.readouterr().err
    assert code == 2 and "no 'clip.model.fusion' choice value builds a model" in err and "space.yaml" in err, err


def test_config_validate_says_the_left_out_value_concerns_tune_only(caplog, capsys):
    """`config validate --config clip-demo` warned that `sum` is left out "of this search" to a user who only
    trains: the warning now says it concerns `tune` and that the config itself is unaffected."""
    from mmlnb_dist.cli import main

    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.tuning.fit"):
        assert main(["config", "validate", "--config", "clip-demo"]) == 0
    said = [m for m in caplog.text.splitlines() + capsys.readouterr().err.splitlines() if "left out" in m]
    assert said and all("mmlnb-dist tune" in m and "train" in m for m in said), said
