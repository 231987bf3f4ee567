"""`train` (and a tracked `evaluate`) whose run folder would be created where a file is (`run.output_dir=` a file,
or a run name taken by a file) is refused naming the file and the setting: it was a `NotADirectoryError`
traceback from the run lock, after the shard set had been checked."""
from __future__ import annotations

import pytest

from support.cli import run_cli
from support.fusion import CPU_DEMO, make_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("s"), n=12, size=16)  # a real set: checked before the run folder


def test_train_into_an_output_dir_that_is_a_file_is_refused_naming_it(shards, tmp_path):
    (tmp_path / "runs.csv").write_text("not a folder")
    code, _, err = run_cli(["train", "--config", str(CPU_DEMO), f"data.shards={shards}",
                            f"run.output_dir={tmp_path / 'runs.csv'}", "tracking.backends=[stdout]"])
    assert code == 2 and "Traceback" not in err, err
    assert f"{tmp_path / 'runs.csv'} is a file" in err and "run.output_dir" in err


def test_train_whose_run_name_is_a_file_is_refused_naming_it(shards, tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r1").write_text("a file")
    code, _, err = run_cli(["train", "--config", str(CPU_DEMO), f"data.shards={shards}",
                            f"run.output_dir={tmp_path / 'runs'}", "run.name=r1", "tracking.backends=[stdout]"])
    assert code == 2 and f"{tmp_path / 'runs' / 'r1'} is a file" in err, err
