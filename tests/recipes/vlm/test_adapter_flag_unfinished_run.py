"""`--adapter` naming a fine-tuning run that has not finished (killed before its end: checkpoints, no `adapter/`),
or one of its DeepSpeed checkpoints, was refused with "(a peft adapter folder is expected)", which says neither why
there is no adapter nor how to get it. The refusal now says the run has not finished and how to finish it, for
`describe` and `export-vlm` alike."""
from __future__ import annotations

import pytest

from support.cli import run_cli
from support.vlm import ROOT

PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")


@pytest.mark.parametrize("command", [["describe", "--vlm", "tiny"], ["export-vlm", "--base", "tiny", "--out", "x"]],
                         ids=["describe", "export-vlm"])
@pytest.mark.parametrize("given", ["run", "checkpoint"])
def test_an_unfinished_run_as_adapter_says_it_has_not_finished(tmp_path, command, given):
    run_dir = tmp_path / "runs" / "ft"
    (run_dir / "checkpoints" / "step-000010").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("run:\n  name: ft\n")
    adapter = run_dir if given == "run" else run_dir / "checkpoints" / "step-000010"
    code, _, err = run_cli([*command, "--config", PROFILE, "--adapter", str(adapter),
                            f"vlm.cache_dir={tmp_path / 'cache'}"])
    assert code == 2 and "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert f"--adapter {adapter}: no adapter_config.json" in last and "has not finished" in last, last
    assert f"--config {run_dir / 'config.yaml'} run.resume=true" in last, last
    assert not (tmp_path / "cache").exists()
