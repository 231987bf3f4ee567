"""`pipeline --from STAGE` takes the stages before STAGE as an earlier run left them. When the config has changed
a setting those stages were built from (say `vlm.lr`, read by finetune-vlm and describe), the later stages ran
on outputs this config would not make, and the report presented the results as this config's without a word.
Now the stage is still reused (that is what --from is for), but the console and the report say it was built
with other settings and how to rebuild it."""
from __future__ import annotations

import logging

from mmlnb_dist.pipeline.report import stage_rows
from mmlnb_dist.pipeline.stages import PlannedStage, recorded, run_stage


def test_a_stage_before_from_built_with_other_settings_is_named_in_the_console_and_the_report(tmp_path, caplog):
    out = tmp_path / "described"
    run_stage("describe", out, "settings-a", lambda resume: out.mkdir() or {})

    same = recorded(PlannedStage("describe", out, "settings-a", lambda resume: {}), "train")
    assert same.status == "reused"
    with caplog.at_level(logging.INFO, logger="mmlnb_dist"):
        other = recorded(PlannedStage("describe", out, "settings-b", lambda resume: {}), "train")
    (line,) = [r.getMessage() for r in caplog.records if "built with other settings" in r.getMessage()]
    assert line.startswith(f"--from train: describe ({out}) was built with other settings") and \
        "--from describe" in line, line
    assert other.fingerprint == "settings-a"  # what the later stages really read
    assert stage_rows([same, other])[2:4] == [
        f"| describe | reused (before --from) | 0.0 s (took {same.info['wall_seconds']:.1f} s when it ran) | `{out}` |",
        f"| describe | reused (before --from), built with other settings than this config's | 0.0 s (took "
        f"{other.info['wall_seconds']:.1f} s when it ran) | `{out}` |"]
