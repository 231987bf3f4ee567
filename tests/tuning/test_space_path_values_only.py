"""`driver.absolute_values` makes a space's choice and grid paths absolute by building and validating a whole config
per value. Values of a field that cannot hold a path (a `Literal` such as `fusion.curriculum.schedule`, numbers)
need none of that: they are kept as written without a config being built. Path values are still made absolute."""
from __future__ import annotations

from pathlib import Path

from mmlnb_dist.config import load_config


def _counted(monkeypatch):
    import mmlnb_dist.config as config

    calls = []
    real = config.config_from_dict

    def counting(raw, source="<dict>"):
        calls.append(source)
        return real(raw, source)

    monkeypatch.setattr(config, "config_from_dict", counting)
    return calls


def test_choices_of_fields_that_hold_no_path_build_no_config(tmp_path, monkeypatch):
    from mmlnb_dist.tuning.driver import absolute_values

    base = load_config("cpu-demo").model_dump(mode="json")
    space = {"fusion.curriculum.schedule": {"choice": ["step", "linear", "cosine"]},
             "train.global_batch_size": {"choice": [16, 32]},
             "train.lr": {"loguniform": [1e-4, 1e-2]}}
    calls = _counted(monkeypatch)
    assert absolute_values(space, base, tmp_path) == space
    assert calls == []


def test_path_choices_are_still_made_absolute(tmp_path, monkeypatch):
    from mmlnb_dist.tuning.driver import absolute_values

    base = load_config("cpu-demo").model_dump(mode="json")
    space = {"data.shards": {"grid": ["shards/a", str(tmp_path / "b")]},
             "fusion.curriculum.schedule": {"choice": ["step", "linear"]}}
    out = absolute_values(space, base, tmp_path)
    assert out["data.shards"]["grid"] == [str(tmp_path / "shards" / "a"), str(tmp_path / "b")]
    assert out["fusion.curriculum.schedule"] == space["fusion.curriculum.schedule"]
    assert Path(out["data.shards"]["grid"][0]).is_absolute()
