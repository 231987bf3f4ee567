"""`predict`'s inputs in the forms a user copies them: a shard sample as `predict` names it (`<tar>:<key>`, the
`source` of a predictions row or of a `.skipped.csv` line), a file whose name holds ':', a `file://` URL, a Windows
path and a web URL. Each is predicted, or refused naming the input exactly as given, with why; a URL's `//` is
not lost on the way (`file:/x`), and a member of an existing shard is not called "no such file or folder"."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.predict import collect_inputs
from mmlnb_dist.predict import run as predict_run
from mmlnb_dist.predict.inputs import shard_sets_read
from support.cli import run_cli
from support.fusion import make_shards
from support.predict_stand_in import StandIn


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("s"), n=12, size=16)


def _png(path: Path) -> Path:
    Image.fromarray(np.full((8, 8, 3), 7, dtype=np.uint8)).save(path)
    return path


def _a_sample(shards):
    tar = sorted(shards.glob("val-*.tar"))[0]
    items, _ = collect_inputs([tar])
    return tar, items[1]["sample_key"], len(items)


def test_a_shard_sample_named_as_predict_names_it_is_predicted_alone(shards):
    tar, key, n = _a_sample(shards)
    assert n > 2
    items, failed = collect_inputs([f"{tar}:{key}"])
    assert failed == [] and [(it["key"], it["source"]) for it in items] == [(key, f"{tar}:{key}")]
    # its shard set is read-locked as when the shard is given
    assert shard_sets_read([f"{tar}:{key}"]) == [shards.resolve()]
    items, failed = collect_inputs([f"{tar}:no_such_key"])
    assert items == [] and failed[0][0] == f"{tar}:no_such_key"
    assert "no sample 'no_such_key'" in failed[0][1] and str(tar) in failed[0][1]


def test_a_file_whose_name_holds_a_colon_is_read_as_a_file(tmp_path):
    items, failed = collect_inputs([_png(tmp_path / "a:b.png"), str(tmp_path / "c:d.png")])
    assert [it["key"] for it in items] == ["a:b"]
    assert failed == [(str(tmp_path / "c:d.png"), "no such file or folder")]


def test_a_file_url_is_read_as_its_local_path(tmp_path):
    image = _png(tmp_path / "a b.png")
    items, failed = collect_inputs([f"file://{tmp_path}/a%20b.png", f"file://localhost{image}"])
    assert failed == [] and len(items) == 1 and Path(items[0]["path"]) == image  # (one file, named twice)
    items, failed = collect_inputs([f"file://{tmp_path}/gone.png"])
    assert items == [] and failed == [(f"file://{tmp_path}/gone.png", "no such file or folder")]


def test_a_url_or_a_windows_path_is_refused_naming_it_as_given(tmp_path):
    given = ["https://example.org/p1.png", "C:\\data\\p1.png", "file://otherhost/data/p1.png"]
    items, failed = collect_inputs(given)
    assert items == [] and [name for name, _ in failed] == given
    assert "URL" in failed[0][1] and "Windows" in failed[1][1] and "otherhost" in failed[2][1]


def test_the_command_names_a_url_input_as_typed(tmp_path):
    url = f"file://{tmp_path}/gone.png"
    code, _, err = run_cli(["predict", "--model", "models:/m@champion", url, "--out", str(tmp_path / "p.csv")])
    assert code == 2 and f"{url}: no such file or folder" in err


def test_a_shard_sample_and_a_file_url_are_predicted_by_the_command(shards, tmp_path, monkeypatch):
    tar, key, _ = _a_sample(shards)
    image = _png(tmp_path / "x.png")
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    code, out, err = run_cli(["predict", "--model", "m", f"{tar}:{key}", f"file://{image}",
                              "--out", str(tmp_path / "p.csv")])
    assert code == 0, err
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("key,") and "2 prediction(s)" in out


def test_an_input_that_cannot_be_looked_at_is_reported_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    image, too_long = _png(tmp_path / "x.png"), str(tmp_path / ("n" * 300 + ".png"))  # over NAME_MAX
    code, _, err = run_cli(["predict", "--model", "m", too_long, str(image), "--out", str(tmp_path / "p.csv")])
    assert code == 1 and "Traceback" not in err and f"unreadable: {too_long}: OSError" in err, err
