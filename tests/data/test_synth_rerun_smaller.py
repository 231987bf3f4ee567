"""A generator rerun into its own earlier output with fewer patches or slides leaves only this run's files: the
earlier run's extra patches stayed in the class folders (a folder of two runs), and `slides synth --per-class 1`
after `--per-class 2` left three slides that the next step, `slides tile`, reported as unlabelled (exit 1). A
`--out` that is a file is refused naming it, not with 'Not a directory: out/UD'."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.runlock import is_lock_file
from mmlnb_dist.data.synthetic import make_synthetic_dataset

from support.cli import run_cli


def _files(folder):  # the generators' folder lock (.lock, .lock.json) is not an output
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not is_lock_file(p.name))


def test_data_synth_rerun_with_fewer_patches_keeps_only_this_runs(tmp_path):
    make_synthetic_dataset(tmp_path / "s", n=12, size=16, n_slides=3)
    make_synthetic_dataset(tmp_path / "fresh", n=6, size=16, n_slides=3)
    make_synthetic_dataset(tmp_path / "s", n=6, size=16, n_slides=3)
    assert _files(tmp_path / "s") == _files(tmp_path / "fresh")
    assert all((tmp_path / "s" / f).read_bytes() == (tmp_path / "fresh" / f).read_bytes()
               for f in _files(tmp_path / "fresh"))


def test_slides_synth_rerun_with_fewer_slides_keeps_only_this_runs(tmp_path):
    out = tmp_path / "wsi"
    assert run_cli(["slides", "synth", "--out", str(out), "--per-class", "2", "--size", "1024"])[0] == 0
    assert run_cli(["slides", "synth", "--out", str(out), "--per-class", "1", "--size", "1024"])[0] == 0
    assert _files(out) == ["labels.csv", "synth-D-0.tif", "synth-PD-0.tif", "synth-UD-0.tif"]


@pytest.mark.parametrize("which", ["data", "slides"])
def test_a_synth_out_that_is_a_file_is_refused_and_left_alone(tmp_path, which):
    target = tmp_path / "out"
    target.write_text("notes")
    if which == "data":
        with pytest.raises(UserError, match=r"out is a file.*give a new or empty folder"):
            make_synthetic_dataset(target, n=6, size=16, n_slides=3)
    else:
        code, _, err = run_cli(["slides", "synth", "--out", str(target), "--per-class", "1", "--size", "1024"])
        assert code == 2 and "out is a file" in err
    assert target.read_text() == "notes"
