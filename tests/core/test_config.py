from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmlnb_dist.config import Config, ConfigError, Section, flatten, load_config, save_config

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted((ROOT / "launch" / "profiles").glob("*.yaml"))


def test_profiles_exist():
    names = {p.stem for p in PROFILES}
    assert {"cpu-demo", "rtx4090", "node-8gpu", "multi-node"} <= names


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_shipped_profile_loads_and_round_trips(path, tmp_path):
    cfg = load_config(path)
    saved = save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(saved) == cfg


def test_rtx4090_is_the_papers_reference():
    cfg = load_config(ROOT / "launch/profiles/rtx4090.yaml")
    assert (cfg.train.epochs, cfg.train.global_batch_size, cfg.train.lr) == (150, 32, 1e-4)
    assert cfg.data.loader.image_size == 224
    assert cfg.distributed.precision == "bf16"
    assert cfg.fusion.model.image_encoder.name == "vgg16"


def _all_fields(model, prefix=""):
    for name, field in model.model_fields.items():
        yield prefix + name, field
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            yield from _all_fields(ann, prefix + name + ".")


def test_every_field_has_a_docstring():
    missing = [key for key, field in _all_fields(Config) if not (field.description or "").strip()]
    assert not missing, f"fields without a docstring: {missing}"


def test_dotted_overrides_are_typed():
    cfg = load_config(None, ["train.lr=3e-4", "fusion.curriculum.enabled=false", "vlm.lora.target_modules=[q_proj]"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.fusion.curriculum.enabled is False
    assert cfg.vlm.lora.target_modules == ["q_proj"]


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.lrr'.*did you mean 'train\.lr'"):
        load_config(None, ["train.lrr=1"])


def test_bad_value_names_the_key_and_value():
    with pytest.raises(ConfigError, match=r"train\.lr: Input should be greater than 0 \(got -1\)"):
        load_config(None, ["train.lr=-1"])


def test_unknown_key_in_yaml_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"train": {"epoch": 3}}))
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key; did you mean 'train\.epochs'"):
        load_config(path)


def test_split_fractions_validated():
    with pytest.raises(ConfigError, match="val_fraction \\+ test_fraction must be < 1"):
        load_config(None, ["data.build.val_fraction=0.6", "data.build.test_fraction=0.5"])


def test_missing_file_and_bad_override_form():
    with pytest.raises(ConfigError, match="config file nope.yaml not found"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="shipped profiles: .*cpu-demo.*rtx4090"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(None, ["train.lr"])


def test_flatten_has_dotted_keys():
    flat = flatten(load_config(None))
    assert flat["fusion.curriculum.start"] == 0.3
    assert "vlm.lora.r" in flat


def test_cli_validate_reports_bad_config_with_exit_code_2():
    run = subprocess.run(
        [sys.executable, "-m", "mmlnb_dist.cli", "config", "validate", "train.epochs=0"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert run.returncode == 2
    assert "train.epochs" in run.stderr and "greater than or equal to 1" in run.stderr


def test_commands_find_the_shipped_profiles_from_any_folder(tmp_path):
    """Issue 11 item 12: the default profile was a path relative to the current folder."""
    def cli(*args):
        res = subprocess.run([sys.executable, "-m", "mmlnb_dist.cli", *args], capture_output=True, text=True,
                             cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        return res.stdout

    # `train`'s default (the cpu-demo profile: global batch 24 on one process)
    assert yaml.safe_load(cli("train", "--print-deepspeed-config"))["train_batch_size"] == \
        load_config(ROOT / "launch/profiles/cpu-demo.yaml").train.global_batch_size
    assert yaml.safe_load(cli("config", "show", "--config", "rtx4090"))["run"]["name"] == "rtx4090"
    assert yaml.safe_load(cli("config", "show", "--config", "launch/profiles/node-8gpu.yaml"))["run"]["name"] == \
        "node-8gpu"
    assert (ROOT / "launch" / "profiles").resolve() == (ROOT / "mmlnb_dist" / "profiles")  # one copy, linked


def test_absolute_paths_anchors_every_relative_path_of_the_config(tmp_path):
    """What a search hands its trials, which run in folders of their own: every relative `Path` field becomes
    absolute against the folder the config was written in; absolute paths, unset paths and other values stay."""
    from mmlnb_dist.core.config import absolute_paths

    cfg = load_config("cpu-demo", ["data.shards=shards/x", f"vlm.pairs={tmp_path / 'pairs'}", "train.lr=0.01"])
    fixed = absolute_paths(cfg, tmp_path)
    assert fixed.data.shards == tmp_path / "shards" / "x" and fixed.run.output_dir == tmp_path / "runs"
    assert fixed.data.synth_dir == tmp_path / "shards" / "demo-src"
    assert fixed.vlm.pairs == tmp_path / "pairs" and fixed.vlm.cache_dir is None and fixed.train.lr == 0.01
    assert cfg.data.shards == Path("shards/x")  # a copy: the caller's config is unchanged
    relative = [k for k, v in flatten(fixed).items() if isinstance(v, str) and v.startswith(("shards", "runs"))]
    assert not relative, relative


def test_explain_shows_one_key_or_section_with_a_profiles_values_beside_the_defaults(capsys):
    """`config explain KEY ...` narrows the listing to keys or sections; with --config it shows the profile's value
    and, where that differs, the default; values read as they are written in YAML, not as Python reprs."""
    from mmlnb_dist.cli import main

    assert main(["config", "explain", "vlm.pairs", "fusion.curriculum"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith('vlm.pairs = "shards/demo"  (from cpu-demo)  # ') for line in lines), lines
    assert all(line.startswith(("vlm.pairs ", "fusion.curriculum")) for line in lines), lines
    assert any(line.startswith("fusion.curriculum.ramp_start = ") for line in lines)
    assert "PosixPath" not in "\n".join(lines)

    profile = load_config("rtx4090")
    assert main(["config", "explain", "--config", "rtx4090", "vlm.pairs", "run.seed", "run.seed=7"]) == 0
    out = capsys.readouterr().out
    assert f'vlm.pairs = "{profile.vlm.pairs}"  (default "shards/demo"; from rtx4090)  # ' in out, out
    assert "run.seed = 7  (default 0; from override)  # " in out, out
    assert "vlm.max_steps" not in out

    assert main(["config", "explain", "vlm.pair"]) == 2
    assert "did you mean 'vlm.pairs'" in capsys.readouterr().err


@pytest.mark.parametrize("override", ["train.lr=inf", "clip.tower_lr=.inf", "distributed.gradient_clipping=inf",
                                      "train.weight_decay=nan", "vlm.lr=-inf"])
def test_a_setting_that_is_not_a_finite_number_is_refused_naming_the_key(override):
    """`train.lr=inf` passed `gt=0` and trained to a NaN at step 1: refused before any work, like any bad value."""
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}: .*finite"):
        load_config("clip-multilabel", [override])


@pytest.mark.parametrize("overrides, key", [(["run.name=exp [baseline]"], "run.name"),
                                            (["run.output_dir=/data/runs[2]"], "run.output_dir"),
                                            (["run.name=try*"], "run.name"),
                                            (["tune.storage_path=/tmp/[searches]"], "tune.storage_path")])
def test_a_run_folder_deepspeed_could_not_load_its_checkpoints_back_from_is_refused_at_load(overrides, key):
    """DeepSpeed finds a checkpoint's files with glob patterns built from the folder path: a run folder with `[`
    trained to its end and then failed to reload its best checkpoint (a bare AssertionError from DeepSpeed's
    state_dict_factory), losing the export. Refused when the config is read, naming the key."""
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}: .*glob"):
        load_config("clip-multilabel", overrides)


def test_spaces_and_braces_in_the_run_folder_are_fine():
    cfg = load_config("clip-multilabel", ["run.output_dir=my runs {v1}", "run.name=exp 1"])
    assert str(cfg.run.dir) == "my runs {v1}/exp 1"


def test_a_folder_or_an_empty_file_as_config_is_named_for_what_it_is(tmp_path):
    """A folder given as --config was "not found" (it is there); an empty (or comments-only) file, a config saved
    before it was written, ran as the built-in defaults without a word."""
    with pytest.raises(ConfigError, match=f"config file {tmp_path} is a folder"):
        load_config(tmp_path)
    empty = tmp_path / "mine.yaml"
    empty.write_text("# to do: my settings\n")
    with pytest.raises(ConfigError, match="mine.yaml holds no settings"):
        load_config(empty)
