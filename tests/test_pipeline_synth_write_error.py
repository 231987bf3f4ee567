"""`pipeline --synthetic` whose synthetic set cannot be written (a read-only or full disk, no permission): `data
synth` says so in one line naming the folder, but the pipeline's synth stage let the generator's OSError end the
command in a traceback. Both now go through one owner (`data.synth_set.write_synth_set`)."""
from __future__ import annotations

import errno

import pytest

from mmlnb_dist.cli import main


@pytest.mark.parametrize("task,generator,module", [
    ("single", "make_synthetic_dataset", "mmlnb_dist.data.synthetic"),
    ("multilabel", "make_multilabel_dataset", "mmlnb_dist.data.synthetic_multilabel")])
def test_a_synth_stage_that_cannot_write_is_a_one_line_error_naming_the_folder(tmp_path, monkeypatch, capsys,
                                                                               task, generator, module):
    import importlib

    synth_dir = tmp_path / "src"

    def refused(out, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(synth_dir / "UD"))

    monkeypatch.setattr(importlib.import_module(module), generator, refused)
    config = "cpu-demo" if task == "single" else "clip-demo"
    code = main(["pipeline", "--synthetic", "--config", config, "--until", "synth", f"run.output_dir={tmp_path / 'r'}",
                 f"data.synth_dir={synth_dir}", f"data.shards={tmp_path / 'shards'}"])
    err = capsys.readouterr().err
    assert code == 2, err
    line = next(x for x in err.splitlines() if "error:" in x)
    assert f"cannot write the synthetic set to {synth_dir}" in line and "Permission denied" in line, err
    assert "data.synth_dir" in line, err


def test_data_synth_still_names_its_out_flag(tmp_path, monkeypatch, capsys):
    import mmlnb_dist.data.synthetic as synthetic

    def full(out, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(out))

    monkeypatch.setattr(synthetic, "make_synthetic_dataset", full)
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--n", "12"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the synthetic set to {tmp_path / 's'}: Read-only file system" in err and "--out" in err, err
