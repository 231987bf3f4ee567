"""`tracking import --stage trian` (a typo of a stage name) was accepted: it made an MLflow run named `...-trian`
and recorded it under a stage nothing reads, and `register --run FOLDER` then said the folder had no run. A stage
that is not one the recipes log under is now refused, with a did-you-mean, before anything is written."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

import mmlnb_dist
from support.cli import run_cli


def _run_folder(tmp_path: Path) -> Path:
    run_dir = tmp_path / "runs" / "t"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"run": {"name": "t", "output_dir": str(tmp_path / "runs")},
                                                         "tracking": {"backends": ["stdout"]}}))
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "train/loss": 1.0}\n')
    return run_dir


def test_a_typo_of_a_stage_is_refused_with_a_did_you_mean_before_any_work(tmp_path):
    run_dir = _run_folder(tmp_path)
    before = sorted(p.name for p in run_dir.iterdir())
    code, out, err = run_cli(["tracking", "import", str(run_dir), "--stage", "trian"])
    assert code == 2, err
    assert "--stage 'trian'" in err and "did you mean 'train'" in err, err
    assert "evaluate" in err  # the stages there are
    assert sorted(p.name for p in run_dir.iterdir()) == before
    assert not (tmp_path / "runs" / "mlflow.db").exists()


def test_the_known_stages_are_the_ones_the_recipes_log_under():
    from mmlnb_dist.core.tracking.folder_import import STAGES

    arg = r"(?:[^,()]|\([^()]*\))+"
    call = re.compile(rf'build_logger\({arg}(?:,{arg}){{3}},\s*"([\w-]+)"')
    constant = re.compile(r'^STAGE = "([\w-]+)"', re.M)
    found = set()
    for path in Path(mmlnb_dist.__file__).parent.rglob("*.py"):
        text = path.read_text()
        found.update(call.findall(text))
        if "build_logger(" in text:
            found.update(constant.findall(text))
    assert {"train", "evaluate", "finetune-vlm"} <= found, found  # the scan still finds them
    assert found <= set(STAGES), found - set(STAGES)
