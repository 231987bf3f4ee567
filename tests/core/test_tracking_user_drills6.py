"""What a new user hit in the tracking settings and commands (defect hunt, track 6); each test names it.

- `tracking.register_alias` / `tracking.register_name` that MLflow's registry refuses (`champ ion`, `latest`, `v2`,
  `nb/fusion`, `..`) were accepted by the config, unlike `register --alias/--name`: the whole training ran, a
  version was logged and registered, and only then did the alias fail, reported as "the tracking server failed
  the registration ... once the server is back" (a `register_later` that could not help).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "mmlnb_dist" / "profiles" / "cpu-demo.yaml"


@pytest.mark.parametrize("key, value, why", [
    ("register_alias", "champ ion", "alphanumerics"), ("register_alias", "latest", "reserved"),
    ("register_alias", "v2", "reserved"), ("register_name", "nb/fusion", "'/'"),
    ("register_name", "models:nb", "':'"), ("register_name", "a?b", "'?'"),
    ("register_name", "..", "path")])
def test_a_registry_name_or_alias_mlflow_refuses_is_a_config_error_before_training(key, value, why):
    with pytest.raises(ConfigError) as err:
        load_config(CPU_DEMO, [f"tracking.{key}={value}"])
    assert f"tracking.{key}" in str(err.value) and why in str(err.value), err.value


@pytest.mark.parametrize("override", ["tracking.register_alias=prod", "tracking.register_alias=best-2_b",
                                      "tracking.register_name=nb fusion"])
def test_a_registry_name_or_alias_mlflow_takes_is_still_accepted(override):
    load_config(CPU_DEMO, [override])
