"""`mmlnb-dist train tune.num_samples=8` trained one run and ignored the override: `train` reads no `tune.*` key,
so a user who meant `mmlnb-dist tune` got a plain training run. A `tune.*` override on `train` is now refused before
any work, naming the command that reads it; a profile's own `tune:` section (cpu-demo has one) is still accepted."""
from __future__ import annotations

import pytest

from support.cli import run_cli


@pytest.mark.parametrize("override", ["tune.num_samples=8", " tune.space=lora"])
def test_train_refuses_a_tune_override_naming_the_tune_command(tmp_path, override):
    code, _, err = run_cli(["train", "--config", "cpu-demo", override, f"data.shards={tmp_path / 'none'}",
                            f"run.output_dir={tmp_path}"])
    key = override.strip().split("=")[0]
    assert code == 2, err
    assert f"train never reads {key}" in err and "mmlnb-dist tune" in err, err
    assert "Traceback" not in err and not any(tmp_path.iterdir())


def test_a_profile_with_a_tune_section_still_trains_up_to_its_next_check(tmp_path):
    code, _, err = run_cli(["train", "--config", "cpu-demo", f"data.shards={tmp_path / 'none'}",
                            f"run.output_dir={tmp_path}"])
    assert code == 2 and "never reads" not in err and "shard folder not found" in err, err
