"""`config explain` says where each value was set: the YAML file (named as given: a shipped profile by its name),
an override, or nowhere (the built-in default). The same value reads alike whether the profile or a forgotten
override in a launch script set it, and the default beside it did not tell which."""
from __future__ import annotations

from mmlnb_dist.cli import main


def _lines(capsys, *args):
    assert main(["config", "explain", *args]) == 0
    return {line.split(" = ")[0]: line for line in capsys.readouterr().out.splitlines()}


def test_each_value_names_the_file_or_override_that_set_it(capsys, tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("train:\n  lr: 0.0001\n  epochs: 3\nrun:\n  seed: 5\n")
    lines = _lines(capsys, "--config", str(config), "train.lr", "train.epochs", "run.seed", "train.weight_decay",
                   "run.seed=9")
    assert lines["train.lr"].startswith(f"train.lr = 0.0001  (from {config})  # "), lines  # equal to the default
    assert lines["train.epochs"].startswith(f"train.epochs = 3  (default 150; from {config})  # "), lines
    assert lines["run.seed"].startswith("run.seed = 9  (default 0; from override)  # "), lines  # the file's 5 lost
    assert "(" not in lines["train.weight_decay"].split("#")[0], lines  # the default, set nowhere


def test_a_shipped_profile_by_name_and_overrides_of_a_list_entry(capsys):
    lines = _lines(capsys, "--config", "cpu-demo", "fusion.curriculum.phases",
                   "fusion.curriculum.phases.2", "fusion.curriculum.phases.2.start_epoch=7")
    assert lines["fusion.curriculum.phases.2.start_epoch"].startswith(
        "fusion.curriculum.phases.2.start_epoch = 7  (default 100; from override)  # "), lines
    assert "(from cpu-demo)" in lines["fusion.curriculum.phases.2.train_image_encoder"], lines
    assert "from override of fusion.curriculum.phases.2.start_epoch)" in lines["fusion.curriculum.phases"], lines


def test_a_section_overridden_as_a_mapping_sets_the_keys_below_it(capsys):
    lines = _lines(capsys, "--config", "cpu-demo", "data.loader.num_workers", "data.loader={num_workers: 0}")
    assert lines["data.loader.num_workers"].startswith("data.loader.num_workers = 0  ("), lines
    assert lines["data.loader.num_workers"].split("#")[0].rstrip().endswith("from override)"), lines
