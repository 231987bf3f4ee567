"""`data synth --out DIR` and `slides synth --out DIR` wrote into any folder: a folder holding a user's own
patches (class folders with a labels.csv) got its labels.csv and descriptions.jsonl replaced and synthetic patches
added beside the real ones, and `slides synth` into a synthetic patch folder replaced that set's labels.csv. Each
generator now refuses a folder holding files it does not write, naming them, before it writes anything; its own
earlier output (a rerun, the demo's) is fine."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.runlock import is_lock_file
from mmlnb_dist.data.synthetic import make_synthetic_dataset
from mmlnb_dist.data.synthetic_multilabel import make_multilabel_dataset

from support.cli import run_cli


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_users_patch_folder_is_refused_and_left_as_it_was(tmp_path):
    data = tmp_path / "mydata"
    (data / "UD").mkdir(parents=True)
    (data / "UD" / "case7_tile3.png").write_bytes(b"my patch")
    (data / "labels.csv").write_text("file,label\nUD/case7_tile3.png,UD\n")
    before = snapshot(data)
    with pytest.raises(UserError, match=r"mydata holds files .*UD/case7_tile3.png.*labels.csv") as err:
        make_synthetic_dataset(data, n=6, size=32, n_slides=3)
    assert "labels.csv" in str(err.value) and "new or empty folder" in str(err.value)
    assert snapshot(data) == before


def test_its_own_earlier_output_is_written_again(tmp_path):
    make_synthetic_dataset(tmp_path / "s", n=6, size=32, n_slides=3)
    first = snapshot(tmp_path / "s")
    make_synthetic_dataset(tmp_path / "s", n=6, size=32, n_slides=3)
    assert snapshot(tmp_path / "s") == first
    make_multilabel_dataset(tmp_path / "m", n=8, size=32, n_slides=2)
    make_multilabel_dataset(tmp_path / "m", n=8, size=32, n_slides=2)


def test_a_multilabel_set_is_not_written_over_a_patch_set(tmp_path):
    make_synthetic_dataset(tmp_path / "s", n=6, size=32, n_slides=3)
    before = snapshot(tmp_path / "s")
    with pytest.raises(UserError, match=r"s holds files data synth --task multilabel did not write \(D/D_\d{5}.png"):
        make_multilabel_dataset(tmp_path / "s", n=8, size=32, n_slides=2)
    assert snapshot(tmp_path / "s") == before


def test_slides_synth_refuses_a_patch_set_and_takes_an_empty_folder(tmp_path):
    make_synthetic_dataset(tmp_path / "s", n=6, size=32, n_slides=3)
    before = snapshot(tmp_path / "s")
    code, _, err = run_cli(["slides", "synth", "--out", str(tmp_path / "s"), "--per-class", "1", "--size", "1024"])
    assert code == 2 and "holds files slides synth did not write (D/D_" in err and "new or empty folder" in err, err
    assert snapshot(tmp_path / "s") == before
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli(["slides", "synth", "--out", str(tmp_path / "empty"), "--per-class", "1",
                              "--size", "1024"])
    assert code == 0, err
    assert sorted(f for f in snapshot(tmp_path / "empty") if not is_lock_file(f)) == ["labels.csv", "synth-D-0.tif", "synth-PD-0.tif", "synth-UD-0.tif"]
