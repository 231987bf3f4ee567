"""The metric-logger interface: one small protocol, backends chosen by config, the rank-0 rule inside.

Training loops call `logger.log_metrics(...)` unconditionally on every rank; `build_logger` hands ranks other
than 0 a logger that does nothing, so no loop ever asks "am I rank 0?" before logging.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..config import Section, flatten, save_config
from ..files import replace_text
from ..sections import RunConfig, TrackingConfig

log = logging.getLogger(__name__.rsplit(".", 1)[0] + ".metrics")  # `[metrics] [step N] ...` lines


class NullLogger:
    """The metric-logger interface, which every backend implements; this one does nothing (what every rank but 0
    gets). `wants_figures` is False when no backend keeps pictures: callers skip drawing them."""

    run_id: Optional[str] = None
    wants_figures: bool = False
    online: bool = True
    """False once a backend could not reach its server (what it logs is kept for a later sync)."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None: ...
    def log_figure(self, figure: Any, name: str) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...

    def resumed_at(self, step: int) -> None:
        """This process continues the run from a checkpoint taken at `step`. The killed process may have logged
        later steps, which this one logs again: each backend keeps one record per step (see the backends)."""


MetricLogger = NullLogger
"""The type every logger has (backends derive from `NullLogger`)."""

EPOCH_SUMMARY = "train_epoch/"
"""Where an epoch's training summary is logged: `train/` belongs to the per-step records, and the same key at the
epoch's last step would give that step two values of different things (one batch's loss, the epoch's mean)."""


def epoch_summary(stats: Mapping[str, float]) -> Dict[str, float]:
    """An epoch's training statistics as logged: `train/x` becomes `train_epoch/x` (see `EPOCH_SUMMARY`)."""
    return {(EPOCH_SUMMARY + k[len("train/"):] if k.startswith("train/") else k): v for k, v in stats.items()}


class StdoutLogger(NullLogger):
    """Metric records as `[step N] key=value` lines in the log and a JSONL copy in the run folder
    (`metrics.jsonl`). The lines are DEBUG records: a pipeline's log file keeps every one, and the console shows
    them only with `mmlnb-dist --verbose`, so the console stays at one line per epoch (the recipes' INFO line)."""

    def __init__(self, run_dir: Optional[Path] = None, resume: bool = False):
        self.jsonl = None
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            # A fresh run starts the file: the folder may hold an earlier run's records (two describe jobs of one
            # profile share `<name>-describe/`; a run that died before its first checkpoint leaves its folder),
            # and config.yaml beside it is this run's. A resumed run continues its own records.
            self.path = run_dir / "metrics.jsonl"
            if resume:
                self._drop_torn_last_line()
            self.jsonl = open(self.path, "a" if resume else "w")
        self.resumed_step: Optional[int] = None
        self.kept_at_resume: set = set()
        """The keys the stopped process logged at the checkpoint's own step (after it: a finished run's `best/*`)."""

    def _drop_torn_last_line(self) -> None:
        """Cut a last line a killed process left without its newline: appended to, it glued this process's first
        record onto it (one unreadable line; stages that resume without `resumed_at`: describe, evaluate)."""
        if not self.path.is_file():
            return
        with open(self.path, "r+b") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
                log.warning("%s: its last record was cut short (the process writing it was stopped): left out",
                            self.path)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if log.isEnabledFor(logging.DEBUG):
            text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
            log.debug("[step %d] %s", step, text)
        if self.jsonl and step == self.resumed_step and self.kept_at_resume.intersection(metrics):
            self._drop_at_resumed_step(set(metrics))
        if self.jsonl:
            self.jsonl.write(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}) + "\n")
            self.jsonl.flush()

    def resumed_at(self, step: int) -> None:
        """Drop the records of steps after `step`: they are the killed process's, and this process logs those
        steps again, so the file reads as an uninterrupted run's (a line a kill cut short goes too)."""
        if not self.jsonl:
            return
        self.jsonl.close()
        kept, dropped, damaged = [], 0, 0
        self.resumed_step, self.kept_at_resume = step, set()
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                keep = int(record["step"]) <= step
            except (ValueError, KeyError, TypeError):
                # not one of the records after the checkpoint: a damaged line, named so the loss is found
                log.warning("%s:%d: not a metric record (damaged); left out: %.80s", self.path, number, line)
                damaged += 1
                continue
            if keep:
                kept.append(line)
                if int(record["step"]) == step:
                    self.kept_at_resume.update(k for k in record if k != "step")
            else:
                dropped += 1
        if dropped or damaged:
            replace_text(self.path, "".join(line + "\n" for line in kept))
        if dropped:
            log.info("%s: %d record(s) after step %d, from the process that was stopped, replaced by this run's",
                     self.path, dropped, step)
        self.jsonl = open(self.path, "a")

    def _drop_at_resumed_step(self, keys: set) -> None:
        """This process logs again keys the stopped one logged at the checkpoint's step (a finished run resumed, or
        one killed in its finish, evaluates the best checkpoint again): its records replace the earlier ones."""
        self.jsonl.close()
        lines = []
        for line in self.path.read_text().splitlines():
            record = json.loads(line)
            if int(record["step"]) == self.resumed_step:
                record = {k: v for k, v in record.items() if k not in keys}
                if len(record) == 1:
                    continue
                line = json.dumps(record)
            lines.append(line)
        replace_text(self.path, "".join(line + "\n" for line in lines))
        self.kept_at_resume -= keys
        self.jsonl = open(self.path, "a")

    def close(self, status: str = "FINISHED") -> None:
        if self.jsonl:
            self.jsonl.close()
            self.jsonl = None


class MultiLogger(NullLogger):
    """Fans every call out to several backends."""

    def __init__(self, loggers: List[Any]):
        self.loggers = loggers

    def log_params(self, params):
        for lg in self.loggers:
            lg.log_params(params)

    def log_metrics(self, metrics, step):
        for lg in self.loggers:
            lg.log_metrics(metrics, step)

    def log_artifact(self, path, artifact_path=None):
        for lg in self.loggers:
            lg.log_artifact(path, artifact_path)

    def log_figure(self, figure, name):
        for lg in self.loggers:
            lg.log_figure(figure, name)

    def set_tags(self, tags):
        for lg in self.loggers:
            lg.set_tags(tags)

    def close(self, status="FINISHED"):
        for lg in self.loggers:
            lg.close(status)

    def resumed_at(self, step):
        for lg in self.loggers:
            lg.resumed_at(step)

    @property
    def run_id(self) -> Optional[str]:
        return next((lg.run_id for lg in self.loggers if getattr(lg, "run_id", None)), None)

    @property
    def wants_figures(self) -> bool:
        return any(lg.wants_figures for lg in self.loggers)

    @property
    def online(self) -> bool:
        return all(lg.online for lg in self.loggers)



def recorded_config(config: Section) -> Section:
    """`config` as its run folder records it: without `tracking.server`, a server that ends with the tune search
    that started it (its `tracking.uri`, the store that server served, is where the run's MLflow run lives: what
    `tracking import` and a resume outside the search read)."""
    tracking = getattr(config, "tracking", None)
    if not isinstance(tracking, TrackingConfig) or tracking.server is None:
        return config
    return config.model_copy(update={"tracking": tracking.model_copy(update={"server": None})})


def build_logger(tracking: TrackingConfig, run: RunConfig, rank: int, run_dir: Path, stage: str, *,
                 config: Optional[Section] = None, datasets: Sequence[Dict[str, Any]] = (),
                 tags: Optional[Mapping[str, str]] = None) -> MetricLogger:
    """The logger for one run of one stage. Ranks other than 0 get a `NullLogger`.

    The MLflow run gets: `config` flattened as params and saved as `<run_dir>/config.yaml` (an artifact), the
    git commit, package versions and device as tags, and `datasets` (`ShardSet.dataset_specs()`) as dataset
    inputs; `datasets` are also recorded in `<run_dir>/datasets.json` (`lineage.record_datasets`), whatever the
    backends (`core.recipe.run` refuses a resume on other shard sets than they record). Its name is
    `<run.name>-<stage>`; the URI is `tracking.uri` or a SQLite store in `run.output_dir`.
    With `run.resume` it continues the MLflow run recorded in `<run_dir>/tracking/<stage>.json` (and sends what
    the earlier process journaled but could not send); a fresh run always gets a new MLflow run.
    """
    if rank != 0:
        return NullLogger()
    from .environment import environment_tags
    from .lineage import record_datasets
    from .server import default_tracking_uri

    run_dir = Path(run_dir)
    if datasets:  # whatever the backends: `tracking import` logs them for a run trained without mlflow
        record_datasets(run_dir, stage, datasets)
    loggers: List[Any] = []
    if "stdout" in tracking.backends:
        loggers.append(StdoutLogger(run_dir, resume=run.resume))
    if "mlflow" in tracking.backends:
        from .mlflow_logger import MLflowLogger

        base_tags = {"stage": stage, "run_dir": str(run_dir.resolve()), **dict(tags or {})}
        if tracking.log_environment:
            base_tags.update(environment_tags())
        ml = MLflowLogger(tracking, default_tracking_uri(tracking, run.output_dir), run.output_dir / "mlartifacts",
                          run_name=f"{run.name}-{stage}", tags=base_tags, run_dir=run_dir, stage=stage,
                          resume=run.resume)
        loggers.append(ml)
        if config is not None:
            config = recorded_config(config)
            # `run.resume` says how this process started, not what the run is (a resumed run keeps its params).
            ml.log_params({k: v for k, v in flatten(config).items() if k != "run.resume"},
                          f"{run_dir / 'config.yaml'} (the run's config.yaml artifact)")
            ml.log_artifact(save_config(config, run_dir / "config.yaml"))
        if tracking.log_dataset and datasets:
            ml.log_datasets(list(datasets))
    return MultiLogger(loggers)
