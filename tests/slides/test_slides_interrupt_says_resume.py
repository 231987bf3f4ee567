"""A `slides tile` stopped by Ctrl-C or SIGTERM says what it kept and how to go on.

It ended on "mmlnb-dist slides: interrupted" alone: nothing said that the slides tiled so far are staged and that
rerunning the same command resumes from them (a user would delete the half-written output and start over).
"""
from __future__ import annotations

from support.slides import tile, two_slides


def test_an_interrupted_run_names_the_slides_kept_and_the_resume(tmp_path, capsys, monkeypatch, caplog):
    from mmlnb_dist.slides import tiler

    wsi = two_slides(tmp_path / "wsi")
    real, calls = tiler.process_slide, []

    def stop_on_the_second(job):
        if calls:
            raise KeyboardInterrupt
        calls.append(job)
        return real(job)

    monkeypatch.setattr(tiler, "process_slide", stop_on_the_second)
    assert tile(wsi, tmp_path / "shards") == 130
    said = caplog.text + capsys.readouterr().err
    assert "1 slide(s) tiled so far" in said and "rerun the same command" in said, said
    assert str(tmp_path / "shards.work") in said
