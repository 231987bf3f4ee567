"""`~` in a path setting is the user's home folder, from a file or an override, in every section.

No path field called expanduser: `data synth 'data.synth_dir=~/synthx'` made a folder named `~` in the current
folder (and a later `rm -rf ~` there deletes the home folder). Every Path-typed field of every section (the shared
ones and the recipes', which live in other packages) now expands it when the config is read or assigned."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmlnb_dist.cli import main
from mmlnb_dist.config import load_config


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    return home


def test_an_override_of_a_path_expands_the_home_folder(home):
    cfg = load_config("cpu-demo", ["data.synth_dir=~/synthx", "run.cache_dir=~/cache", "vlm.pairs=~/pairs",
                                   "slides.mask_dir=~/masks", "run.output_dir=~"])
    assert cfg.data.synth_dir == home / "synthx" and cfg.run.cache_dir == home / "cache"
    assert cfg.vlm.pairs == home / "pairs" and cfg.slides.mask_dir == home / "masks" and cfg.run.output_dir == home


def test_a_config_file_path_expands_the_home_folder(home, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("run: {output_dir: ~/runs}\ndata:\n  shards: ~/shards/a\n")
    cfg = load_config(path)
    assert cfg.run.output_dir == home / "runs" and cfg.data.shards == home / "shards" / "a"
    assert cfg.run.dir == home / "runs" / "mmlnb"


def test_an_assigned_path_and_the_shown_config_expand_it(home, capsys):
    cfg = load_config("cpu-demo")
    cfg.data.shards = "~/other"
    assert cfg.data.shards == home / "other"
    assert main(["config", "show", "data.synth_dir=~/synthx"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["synth_dir"] == str(home / "synthx")


def test_a_tilde_inside_a_path_and_text_fields_stay_as_written(home):
    cfg = load_config("cpu-demo", ["data.shards=shards/~x", "run.name=~me", "tracking.experiment=~/x"])
    assert cfg.data.shards == Path("shards/~x") and cfg.run.name == "~me" and cfg.tracking.experiment == "~/x"


def test_str_settings_that_may_be_local_paths_expand_the_home_folder_and_stay_str(home):
    """A DeepSpeed JSON, a feature folder, weight files and model folders are str settings (a name or a path): they
    kept `~` as written, and `distributed.deepspeed_config=~/ds.json` was "not found"."""
    cfg = load_config("cpu-demo", ["distributed.deepspeed_config=~/ds.json", "fusion.image_features=~/features",
                                   "fusion.model.image_encoder.weights_path=~/w.safetensors", "vlm.model=~/qwen",
                                   "fusion.model.text_encoder.name=~/bert", "clip.model.towers.name=~/clip",
                                   "clip.model.image_encoder_weights_path=~/img.pt"])
    assert cfg.distributed.deepspeed_config == str(home / "ds.json")
    assert cfg.fusion.image_features == str(home / "features")
    assert cfg.fusion.model.image_encoder.weights_path == str(home / "w.safetensors")
    assert cfg.vlm.model == str(home / "qwen") and cfg.fusion.model.text_encoder.name == str(home / "bert")
    assert cfg.clip.model.image_encoder_weights_path == str(home / "img.pt")
    assert cfg.clip.model.towers.name == str(home / "clip")
    assert all(isinstance(v, str) for v in (cfg.vlm.model, cfg.distributed.deepspeed_config))
    named = load_config("cpu-demo", ["vlm.model=Qwen/Qwen2.5-VL-7B-Instruct", "fusion.model.text_encoder.name=minilm"])
    assert named.vlm.model == "Qwen/Qwen2.5-VL-7B-Instruct" and named.fusion.model.text_encoder.name == "minilm"


def test_an_optional_path_text_override_is_the_text_as_typed(home):
    """Optional[PathText] hid its str inside Annotated, so its overrides were read as YAML: `#` cut the value and
    a number-like folder name was refused (review of the PathText change)."""
    cfg = load_config("cpu-demo", ["fusion.image_features=/data/feat #1", "distributed.deepspeed_config=2024"])
    assert cfg.fusion.image_features == "/data/feat #1" and cfg.distributed.deepspeed_config == "2024"
