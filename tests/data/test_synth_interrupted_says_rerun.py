"""A `data synth` stopped by Ctrl-C or SIGTERM says that its folder is incomplete and that the same command completes
it (it ended on "mmlnb-dist data: interrupted" alone, as `slides tile` did before it said how to resume)."""
from __future__ import annotations

from mmlnb_dist.cli import main


def test_an_interrupted_synth_names_the_folder_and_the_rerun(tmp_path, capsys, monkeypatch, caplog):
    import mmlnb_dist.data.synthetic as synthetic

    def stopped(out, **_):
        (tmp_path / "src").mkdir()
        raise KeyboardInterrupt  # the user's Ctrl-C, part-way through the patches

    monkeypatch.setattr(synthetic, "make_synthetic_dataset", stopped)
    assert main(["data", "synth", "--out", str(tmp_path / "src"), "--n", "9", "--size", "32"]) == 130
    said = caplog.text + capsys.readouterr().err
    assert str(tmp_path / "src") in said and "rerun the same command" in said, said
