"""The shared config sections' bounds and forms, found unguarded by a mutation audit of `core/sections.py`: values
that would train wrongly or fail late (a warmup over all steps, a final lr above the peak, a zero lr, a rank wait of
0 s), run folders DeepSpeed cannot glob back, and tracking URIs MLflow 3 cannot open, refused when the config is
read, naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import ConfigError, load_config
from mmlnb_dist.core.sections import DistributedConfig, RunConfig


@pytest.mark.parametrize("override, key", [
    ("train.lr_schedule.warmup_ratio=1.0", "warmup_ratio"),
    ("train.lr_schedule.min_lr_ratio=1.5", "min_lr_ratio"),
    ("train.lr=0", "train.lr"),
    ("distributed.gradient_clipping=-1", "gradient_clipping"),
    ("distributed.rank0_wait_s=0", "rank0_wait_s"),
    ("tracking.system_metrics_interval_s=0", "system_metrics_interval_s"),
    ("run.output_dir=runs?", "run.output_dir"),
    ("run.name=a?b", "run.name"),
])
def test_a_value_out_of_its_range_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, [override])


def test_the_edges_of_the_ranges_are_accepted():
    cfg = load_config(None, ["train.lr_schedule.warmup_ratio=0.99", "train.lr_schedule.min_lr_ratio=1.0",
                             "distributed.gradient_clipping=0", "distributed.rank0_wait_s=1"])
    assert (cfg.train.lr_schedule.warmup_ratio, cfg.train.lr_schedule.min_lr_ratio) == (0.99, 1.0)
    assert (cfg.distributed.gradient_clipping, cfg.distributed.rank0_wait_s) == (0.0, 1)


def test_the_run_folders_of_a_run_and_of_its_evaluations():
    run = RunConfig(output_dir=Path("out"), name="exp")
    assert run.dir == Path("out/exp")
    assert run.evaluation_dir("test") == Path("out/exp-evaluate-test")  # beside the run folder, one per split


def test_the_wait_of_the_ranks_is_no_part_of_a_results_fingerprint():
    a = DistributedConfig(rank0_wait_s=60).results_dump()
    assert "rank0_wait_s" not in a and a == DistributedConfig().results_dump()
    assert a != DistributedConfig(zero_stage=2).results_dump()


@pytest.mark.parametrize("uri", ["sqlite:///", "postgresql://", "file:./mlruns", "./mlruns", "https://:5000"])
def test_a_tracking_uri_mlflow_cannot_open_is_refused(uri, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ConfigError, match="tracking.uri"):
        load_config(None, [f"tracking.uri={uri}"])


@pytest.mark.parametrize("uri", ["databricks", "Databricks", "databricks://profile", "SQLITE:///x.db",
                                 "postgresql+psycopg2://u@h/db", "mysql://h/db"])
def test_the_tracking_stores_mlflow_opens_are_accepted(uri):
    scheme, sep, rest = uri.partition("://")
    assert load_config(None, [f"tracking.uri={uri}"]).tracking.uri == (f"{scheme.lower()}{sep}{rest}" if sep else uri)
