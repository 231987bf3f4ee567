"""Two `pipeline` commands of one run.name at once (a job submitted twice, a demo started in a second terminal):
the second found the first's open stages "running" with its own fingerprint and resumed them beside it: both
generated the synthetic set into one folder while the first's shards stage read it, both evaluated and wrote one
report. Now the second is refused before any stage, naming the folder and the job that holds it."""
from __future__ import annotations

from mmlnb_dist.cli import main
from mmlnb_dist.core.runlock import FolderLock


def test_a_second_pipeline_of_the_same_run_is_refused_naming_the_first(tmp_path, monkeypatch, capsys):
    import mmlnb_dist.pipeline

    ran = []
    monkeypatch.setattr(mmlnb_dist.pipeline, "run_pipeline", lambda *a, **k: ran.append(1))
    args = ["pipeline", "--synthetic", "--config", "cpu-demo", f"run.output_dir={tmp_path}", "run.name=night"]
    with FolderLock(tmp_path / "night-pipeline", "mmlnb-dist pipeline"):  # the first one, still running
        assert main(args) == 2
    assert "night-pipeline is in use by `mmlnb-dist pipeline` (pid" in capsys.readouterr().err
    assert ran == []
    assert not (tmp_path / "night-pipeline" / "pipeline.log").exists()  # nothing of it in the first's log
    monkeypatch.setattr(mmlnb_dist.pipeline, "run_pipeline", lambda *a, **k: ran.append(1) or
                        mmlnb_dist.pipeline.PipelineRun(report="done"))
    assert main(args) == 0 and ran == [1]  # once the first is over
