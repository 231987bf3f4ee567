"""`--adapter RUN_DIR` (the fine-tuning run's folder, which `finetune-vlm` prints as run_dir beside adapter_dir) is a
likely slip: it was refused as "no adapter_config.json" without saying where the adapter is. The refusal now names
the run's adapter folder, for `describe` and `export-vlm` alike; a folder without one keeps the plain message."""
from __future__ import annotations

import pytest

from support.cli import run_cli
from support.vlm import ROOT

PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")


@pytest.mark.parametrize("command", [["describe", "--vlm", "tiny"], ["export-vlm", "--base", "tiny", "--out", "x"]],
                         ids=["describe", "export-vlm"])
def test_a_run_folder_as_adapter_names_its_adapter_folder(tmp_path, command):
    run_dir = tmp_path / "runs" / "ft"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    code, _, err = run_cli([*command, "--config", PROFILE, "--adapter", str(run_dir),
                            f"vlm.cache_dir={tmp_path / 'cache'}"])
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert f"--adapter {run_dir}: no adapter_config.json" in last and f"--adapter {run_dir / 'adapter'}" in last, last
    code, _, err = run_cli([*command, "--config", PROFILE, "--adapter", str(tmp_path / "runs"),
                            f"vlm.cache_dir={tmp_path / 'cache'}"])
    assert code == 2 and err.strip().splitlines()[-1].endswith("(a peft adapter folder is expected)"), err[-2000:]
