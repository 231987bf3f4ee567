"""`tune.best_config` is overwritten when the search ends: pointed at the user's own `--config` file (or any file that
is not a best.yaml this search wrote), the search ran every trial and then replaced it with the best trial's config.
It is refused before the search starts, naming the file; a best.yaml this search wrote (a resumed search) is kept
as the place to write."""
from __future__ import annotations

import contextlib
import io

from mmlnb_dist.cli import main


def _tune(monkeypatch, argv):
    from mmlnb_dist.tuning import driver

    ran = []
    monkeypatch.setattr(driver, "run_search", lambda cfg, space: ran.append(cfg) or {"trials": 1, "errored": 0,
                                                                                      "best_config": "b.yaml"})
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue(), ran


def _user_config(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.config import save_config

    return save_config(load_config("cpu-demo"), tmp_path / "mine.yaml")


def test_the_config_file_the_search_starts_from_is_refused(tmp_path, monkeypatch):
    mine = _user_config(tmp_path)
    before = mine.read_text()
    code, err, ran = _tune(monkeypatch, ["tune", "--config", str(mine), f"tune.best_config={mine}"])
    assert (code, ran) == (2, []), err
    assert f"tune.best_config: {mine}" in err and "--config" in err, err
    assert mine.read_text() == before


def test_another_existing_file_is_refused(tmp_path, monkeypatch):
    notes = tmp_path / "notes.yaml"
    notes.write_text("a: 1\n")
    code, err, ran = _tune(monkeypatch, ["tune", "--config", "cpu-demo", f"tune.best_config={notes}"])
    assert (code, ran) == (2, []), err
    assert f"tune.best_config: {notes}" in err and "not a best config this search" in err, err


def test_a_best_yaml_this_search_wrote_and_a_new_file_are_taken(tmp_path, monkeypatch):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.config import save_config

    written = save_config(load_config("cpu-demo", ["tune.name=s1", "run.name=s1-best"]), tmp_path / "best.yaml")
    for best in (written, tmp_path / "new.yaml"):
        code, err, ran = _tune(monkeypatch, ["tune", "--config", "cpu-demo", "tune.name=s1",
                                             f"tune.best_config={best}"])
        assert (code, len(ran)) == (0, 1), err
