"""Which labels row is which slide. A slide's id is its file stem; a label file that names the slides by their file
names (`a.svs`, as a slide table from a scanner export or TCGA often does) matched none of them, and the pipeline
said only "no tile was kept from any slide ... check --labels", with every slide both "unlabelled" and
"missing_slide" in a summary.csv the user had to find."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.cli import main

SMALL = ["slides.sampling.max_tiles_per_slide=2", "data.build.val_fraction=0.34", "data.build.test_fraction=0"]


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("wsi")
    for k, label in enumerate(("UD", "PD", "D") * 2):
        write_synthetic_slide(folder / f"case-{k}.tif", label, width=1024, height=1024, pool_size=3,
                              downsamples=(1, 4), seed=k)
    return folder


def _labels(path: Path, names) -> Path:
    path.write_text("slide_id,label\n" + "".join(f"{n},{label}\n" for n, label in zip(names, ("UD", "PD", "D") * 2)))
    return path


def test_labels_may_name_the_slides_by_their_file_names(slides, tmp_path, capsys):
    labels = _labels(tmp_path / "labels.csv", [f"case-{k}.tif" for k in range(6)])
    out = tmp_path / "shards"
    assert main(["slides", "tile", "--slides", str(slides), "--labels", str(labels), "--out", str(out), "--quiet",
                 *SMALL]) == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(s["num_samples"] for s in manifest["splits"].values()) == 6 * 2
    assert "problems" not in capsys.readouterr().err


def test_labels_that_match_no_slide_are_explained_before_anything_is_built(slides, tmp_path, capsys):
    labels = _labels(tmp_path / "labels.csv", [f"patient-{k}" for k in range(6)])
    code = main(["pipeline", "--config", "cpu-demo", "--slides", str(slides), "--labels", str(labels),
                 f"run.output_dir={tmp_path / 'runs'}", f"data.shards={tmp_path / 'tiles'}", "vlm.finetune=false",
                 *SMALL])
    err = capsys.readouterr().err
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    # the error line itself says what does not match, with examples of both sides
    assert "6 slide file(s) are not in the label file" in last and "6 label row(s) name no slide file" in last, last
    assert "'patient-0'" in last and "'case-0'" in last and "file stem" in last, last
