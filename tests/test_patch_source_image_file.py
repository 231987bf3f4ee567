"""`--patches x.png` (pipeline) or `shards build --input x.png` is an image where a patch folder or a CSV is due:
it was read as a CSV ("cannot read CSV x.png: 'utf-8' codec can't decode byte 0x89"), and by the pipeline only when
its shards stage ran. Now refused up front, saying what the flag takes; nothing is written."""
from __future__ import annotations

from PIL import Image

from support.cli import run_cli


def _image(tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(path)
    return path


def test_shards_build_refuses_an_image_file_as_input(tmp_path):
    code, _, err = run_cli(["shards", "build", "--input", str(_image(tmp_path)), "--out", str(tmp_path / "o")])
    assert code == 2 and "x.png: an image file" in err, err
    assert "a folder (class subfolders or labels.csv) or a CSV" in err, err
    assert "codec" not in err and not (tmp_path / "o").exists()


def test_the_pipeline_refuses_an_image_file_as_patches_before_any_stage(tmp_path):
    code, _, err = run_cli(["pipeline", "--config", "cpu-demo", "--patches", str(_image(tmp_path)),
                            f"run.output_dir={tmp_path}/runs", f"data.synth_dir={tmp_path}/synth"])
    assert code == 2 and "--patches" in err and "x.png: an image file" in err, err
    assert not (tmp_path / "runs").exists()
