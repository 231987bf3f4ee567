"""A describe rerun into a finished output describes nothing: it reports 0 described now and no throughput
(samples_per_s None, as a run of no work has none), not a rate of 0 samples/s, which reads as a stalled generator;
the first run's rate is the samples it described over its generation seconds."""
from __future__ import annotations

import pytest

from support.vlm import describe_config, make_pairs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from mmlnb_dist.recipes.vlm.describe import run_describe

    tmp = tmp_path_factory.mktemp("describe_rerun")
    pairs = make_pairs(tmp / "pairs", n=6)
    cfg = describe_config(tmp, "data.loader.num_workers=0")
    first = run_describe(cfg, vlm="tiny", shards_in=pairs, out=tmp / "out", progress=False)
    again = run_describe(cfg, vlm="tiny", shards_in=pairs, out=tmp / "out", progress=False)
    return first, again


def test_the_first_run_reports_its_rate(runs):
    first, _ = runs
    assert first["described_now"] == first["num_samples"] == 6
    assert first["samples_per_s"] == pytest.approx(6 / first["seconds"])


def test_a_rerun_of_a_finished_output_reports_no_rate(runs):
    _, again = runs
    assert again["num_samples"] == 6 and again["described_now"] == 0 and again["load_seconds"] == 0.0
    assert again["samples_per_s"] is None, again
