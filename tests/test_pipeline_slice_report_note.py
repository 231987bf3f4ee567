"""A slice that stops before register writes `report-<from>-<until>.md` and logs where it is, adding that
`report.md` "keeps the last full run's": said also when no full run had ever been made (a first `--until shards`),
pointing a user at a report that does not exist. It now says so only when report.md is there."""
from __future__ import annotations

import logging

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline import PipelineInputs, pipeline_dir, run_pipeline


def _cfg(tmp_path):
    return load_config("clip-demo", [f"run.output_dir={tmp_path / 'runs'}", f"data.synth_dir={tmp_path / 'src'}",
                                     f"data.shards={tmp_path / 'shards'}", "data.synth.n=24", "data.synth.n_slides=4",
                                     "data.synth.size=32"])


def _note(caplog):
    return [r.getMessage() for r in caplog.records if "report of this slice" in r.getMessage()]


def test_a_first_slice_does_not_point_at_a_full_report_that_was_never_written(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    with caplog.at_level(logging.INFO, logger="mmlnb_dist"):
        run_pipeline(cfg, PipelineInputs(synthetic=True), last="synth")
    report = pipeline_dir(cfg) / "report-synth-synth.md"
    assert report.is_file() and not (pipeline_dir(cfg) / "report.md").exists()
    (note,) = _note(caplog)
    assert str(report) in note and "keeps the last full run's" not in note, note


def test_a_slice_after_a_full_run_says_report_md_keeps_it(tmp_path, caplog):
    cfg = _cfg(tmp_path)
    pipeline_dir(cfg).mkdir(parents=True)
    (pipeline_dir(cfg) / "report.md").write_text("# the full run's\n")
    with caplog.at_level(logging.INFO, logger="mmlnb_dist"):
        run_pipeline(cfg, PipelineInputs(synthetic=True), last="synth")
    (note,) = _note(caplog)
    assert f"{pipeline_dir(cfg) / 'report.md'} keeps the last full run's" in note, note
    assert (pipeline_dir(cfg) / "report.md").read_text() == "# the full run's\n"
