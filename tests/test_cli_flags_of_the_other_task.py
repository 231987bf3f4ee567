"""A flag the chosen task does not read was dropped without a word: `data synth --omit-rate 0.3` (without
`--task multilabel`) wrote single-label data, `data synth --task multilabel --noisy-rate 0.5` ignored the rate,
`shards build --separator '|'` (without `--task multilabel`) and `shards build --task multilabel --descriptions F`
built as if they were not given. Each is refused, naming the flag and the task that reads it, before any work."""
from __future__ import annotations

import pytest

from support.cli import run_cli


@pytest.mark.parametrize("argv, says", [
    (["--omit-rate", "0.3"], "--omit-rate is read by --task multilabel only"),
    (["--faint-rate", "0.1", "--wrong-rate", "0.1"], "--wrong-rate, --faint-rate are read by --task multilabel only"),
    (["--task", "multilabel", "--noisy-rate", "0.5"], "--noisy-rate is read by --task single only"),
    (["data.synth.task=multilabel", "--noisy-rate", "0.5"], "--noisy-rate is read by --task single only"),
])
def test_data_synth_refuses_a_flag_of_the_other_task(tmp_path, argv, says):
    out = tmp_path / "src"
    code, _, err = run_cli(["data", "synth", "--out", str(out), "--n", "6", "--size", "32", *argv])
    assert code == 2 and says in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv, says", [
    (["--separator", "|"], "--separator is read by --task multilabel only"),
    (["--min-frequency", "2", "--image-column", "img"], "--image-column, --min-frequency are read by --task "
                                                        "multilabel only"),
    (["--task", "multilabel", "--descriptions", "d.jsonl"], "--descriptions is read by --task single only"),
])
def test_shards_build_refuses_a_flag_of_the_other_task(tmp_path, argv, says):
    out = tmp_path / "shards"
    code, _, err = run_cli(["shards", "build", "--input", str(tmp_path), "--out", str(out), "--no-progress", *argv])
    assert code == 2 and says in err, err
    assert not out.exists()
