"""Mutation-audit guards of the logger fan-out and the stdout backend (`core/tracking/loggers.py`): every call and
the resume point reach every backend, figures are drawn while any backend keeps them, a resume leaves
`metrics.jsonl` readable line by line, and `build_logger` names, documents and continues its MLflow run."""
from __future__ import annotations

import json

from support.fake_mlflow import URI, install

from mmlnb_dist.core.sections import RunConfig, TrackingConfig
from mmlnb_dist.core.tracking import loggers
from mmlnb_dist.core.tracking.loggers import MultiLogger, NullLogger, StdoutLogger, build_logger


class _Recorder(NullLogger):
    """A backend that records each call it gets."""

    def __init__(self, wants_figures=False):
        self.calls, self.wants_figures = [], wants_figures

    def log_params(self, params):
        self.calls.append(("params", dict(params)))

    def log_metrics(self, metrics, step):
        self.calls.append(("metrics", dict(metrics), step))

    def log_artifact(self, path, artifact_path=None):
        self.calls.append(("artifact", path, artifact_path))

    def log_figure(self, figure, name):
        self.calls.append(("figure", figure, name))

    def set_tags(self, tags):
        self.calls.append(("tags", dict(tags)))

    def resumed_at(self, step):
        self.calls.append(("resumed_at", step))

    def close(self, status="FINISHED"):
        self.calls.append(("close", status))


def test_every_call_reaches_every_backend_with_its_arguments():
    """The fan-out passes each call, its artifact path and the resume step to each backend, in order."""
    backends = [_Recorder(), _Recorder()]
    lg = MultiLogger(backends)
    lg.resumed_at(4)
    lg.log_params({"lr": 0.1})
    lg.log_metrics({"a": 1.0}, 5)
    lg.log_artifact("cfg.yaml", "configs")
    lg.log_figure("fig", "val/roc.png")
    lg.set_tags({"t": "x"})
    lg.close("KILLED")
    expected = [("resumed_at", 4), ("params", {"lr": 0.1}), ("metrics", {"a": 1.0}, 5),
                ("artifact", "cfg.yaml", "configs"), ("figure", "fig", "val/roc.png"), ("tags", {"t": "x"}),
                ("close", "KILLED")]
    assert backends[0].calls == expected and backends[1].calls == expected


def test_figures_are_wanted_while_any_backend_keeps_them():
    assert MultiLogger([_Recorder(), _Recorder(wants_figures=True)]).wants_figures is True
    assert MultiLogger([_Recorder(), _Recorder()]).wants_figures is False


def test_a_record_a_kill_cut_short_goes_at_the_resume_and_later_records_read_back(tmp_path):
    """A last line the killed process left half written is dropped by `resumed_at` (it is no record), so every
    line of `metrics.jsonl` after the resume is a whole JSON record."""
    lg = StdoutLogger(tmp_path)
    for step in (1, 2):
        lg.log_metrics({"a": float(step)}, step)
    lg.close()
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 3, "a"')
    lg = StdoutLogger(tmp_path, resume=True)
    lg.resumed_at(5)
    lg.log_metrics({"a": 6.0}, 6)
    lg.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "a": 1.0}, {"step": 2, "a": 2.0}, {"step": 6, "a": 6.0}]


def test_build_logger_names_the_run_logs_its_config_and_a_resume_continues_it(tmp_path, monkeypatch):
    """The MLflow run is `<run.name>-<stage>` with the caller's tags, gets config.yaml as an artifact, and
    `run.resume` continues that same run."""
    stores = install(monkeypatch)
    monkeypatch.setattr(loggers, "flatten", lambda config: {"lr": 0.1})
    monkeypatch.setattr(loggers, "save_config", lambda config, path: (path.write_text("lr: 0.1\n"), path)[1])
    tracking = TrackingConfig(uri=URI, log_environment=False)

    def build(resume):
        return build_logger(tracking, RunConfig(name="r", output_dir=tmp_path, resume=resume), 0, tmp_path / "run",
                            "train", config=object(), tags={"recipe": "x"})
    first = build(resume=False)
    first.close()
    run = stores[URI].runs[first.run_id]
    assert run.info.run_name == "r-train" and run.data.tags["recipe"] == "x"
    assert stores[URI].artifacts == [(first.run_id, "config.yaml", None)]
    again = build(resume=True)
    again.close()
    assert again.run_id == first.run_id and len(stores[URI].runs) == 1
