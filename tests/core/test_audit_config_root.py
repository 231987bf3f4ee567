"""The root config's own checks, found unguarded by a mutation audit of `config/__init__.py`: a registry metric is
`[best/]val/<m>` or `[best/]test/<m>` of the training recipe, checked when the config is read (with a
did-you-mean); a shipped profile is found by name, file name, or its source-checkout path, but a path into some
other folder is not silently replaced by the shipped profile of the same name."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config, resolve_profile


@pytest.mark.parametrize("metric", ["best/val/balanced_accuracy", "val/loss", "best/test/kappa", "test/auroc"])
def test_a_registry_metric_of_the_training_recipe_is_accepted(metric):
    assert load_config(None, [f"tracking.register_metric={metric}"]).tracking.register_metric == metric


def test_a_registry_metric_typo_is_refused_when_the_config_is_read_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"tracking.register_metric: 'best/val/balanced_acuracy' is not a metric "
                                          r"the fusion recipe logs; did you mean 'best/val/balanced_accuracy'\?"):
        load_config(None, ["tracking.register_metric=best/val/balanced_acuracy"])
    with pytest.raises(ConfigError, match=r"register_metric: 'train/loss' is not a metric"):
        load_config(None, ["tracking.register_metric=train/loss"])


def test_a_best_metric_outside_the_recipe_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match=r"train.best_metric: 'micro_f1' is not a metric of the fusion recipe"):
        load_config(None, ["train.best_metric=micro_f1"])


def test_a_shipped_profile_by_name_file_name_or_checkout_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the source checkout: only the shipped copy can answer
    shipped = resolve_profile("cpu-demo")
    assert shipped.name == "cpu-demo.yaml" and shipped.is_file()
    assert resolve_profile("cpu-demo.yaml") == shipped
    assert resolve_profile("launch/profiles/cpu-demo.yaml") == shipped
    with pytest.raises(ConfigError, match=r"config file elsewhere/cpu-demo.yaml not found"):
        resolve_profile("elsewhere/cpu-demo.yaml")  # a typo'd folder is not the shipped profile


def test_a_shipped_profile_named_with_the_yml_suffix_is_found():
    """`--config cpu-demo.yml` (the other YAML suffix) names the shipped `cpu-demo.yaml`; it was "not found"."""
    from mmlnb_dist.config import PROFILES_DIR, resolve_profile

    assert resolve_profile("cpu-demo.yml") == resolve_profile("cpu-demo") == PROFILES_DIR / "cpu-demo.yaml"
