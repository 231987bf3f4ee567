"""Mutation audit of the thin command modules (`mmlnb_dist/commands/*.py`): they parse, refuse bad arguments with
exit 2 and a message naming them, and call the library with what was asked. The library calls are stand-ins here:
nothing is trained, built or searched."""
from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest

from support.cli import run_cli


def test_a_count_that_is_not_a_number_is_refused_with_the_same_words():
    from mmlnb_dist.commands import port_number, positive_int

    with pytest.raises(argparse.ArgumentTypeError, match=r"must be a positive integer \(got 'two'\)"):
        positive_int("two")
    assert positive_int("1") == 1
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be a port number from 1 to 65535 \(got 'http'\)"):
        port_number("http")
    with pytest.raises(argparse.ArgumentTypeError, match=r"\(got '65536'\)"):
        port_number("65536")
    assert (port_number("1"), port_number("65535")) == (1, 65535)


def _ablate(monkeypatch, tmp_path, *argv):
    from mmlnb_dist import studies

    seen = {}

    def run_study(cfg, rows, seeds, descriptions=None, train_jobs=None):
        seen.update(rows=rows, seeds=seeds, descriptions=descriptions, train_jobs=train_jobs)
        return SimpleNamespace(markdown="| table |", study_dir=Path(cfg.run.dir), parent_run_id=None, failed={})

    monkeypatch.setattr(studies, "run_study", run_study)
    code, out, err = run_cli(["ablate", "--config", "cpu-demo", f"run.output_dir={tmp_path}", *argv])
    return code, out, err, seen


def test_ablate_parses_rows_and_seeds_and_runs_rows_as_trials_only_when_concurrent(monkeypatch, tmp_path):
    from mmlnb_dist.tuning.study import train_as_trials

    code, out, _, seen = _ablate(monkeypatch, tmp_path, "--rows", " full, ,no_text", "--seeds", "0, 2,",
                                 "--descriptions", "shards")
    assert code == 0 and "| table |" in out
    assert (seen["rows"], seen["seeds"], seen["descriptions"], seen["train_jobs"]) == \
        (["full", "no_text"], [0, 2], "shards", None)
    code, out, _, seen = _ablate(monkeypatch, tmp_path, "tune.max_concurrent=2")
    assert code == 0 and seen["train_jobs"] is train_as_trials and seen["rows"] is None and seen["seeds"] == [0]
    assert "each trial's run" in out


def test_ablate_refuses_seeds_that_are_not_integers(monkeypatch, tmp_path):
    code, _, err, seen = _ablate(monkeypatch, tmp_path, "--seeds", "0,one")
    assert code == 2 and "--seeds: '0,one' is not a comma-separated list of integers" in err, err
    assert seen == {}


@pytest.mark.parametrize("classes, says", [("UD", "--classes (data.classes) needs at least two distinct names"),
                                            ("A,B,A", "data.classes: 'A' is listed twice")])
def test_shards_build_refuses_fewer_than_two_distinct_classes(tmp_path, classes, says):
    code, _, err = run_cli(["shards", "build", "--input", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                            "--classes", classes])
    assert code == 2 and says in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("size, ok", [(1000, False), (768, False), (1024, True), (1280, True)])
def test_slides_synth_takes_only_a_multiple_of_256_of_at_least_1024(monkeypatch, tmp_path, size, ok):
    from mmlnb_dist.slides import synthetic_slides

    written = []
    monkeypatch.setattr(synthetic_slides, "write_synthetic_slide", lambda path, label, **kw: written.append(kw))
    code, out, err = run_cli(["slides", "synth", "--out", str(tmp_path / "s"), "--size", str(size),
                              "--per-class", "1", "--seed", "2"])
    if ok:
        assert code == 0 and "3 synthetic slides" in out and [w["width"] for w in written] == [size] * 3
        assert [w["seed"] for w in written] == [2000, 2100, 2200]
    else:
        assert code == 2 and f"--size {size}: must be a multiple of 256 and at least 1024" in err, err
        assert written == [] and not (tmp_path / "s").exists()


def test_tune_hands_the_ray_address_flag_over_the_config(monkeypatch):
    from mmlnb_dist.tuning import driver

    seen = {}
    monkeypatch.setattr(driver, "run_search", lambda cfg, space: seen.update(cfg=cfg, space=space) or
                        {"trials": 1, "errored": 0, "best_config": "b.yaml"})
    code, _, _ = run_cli(["tune", "--config", "cpu-demo", "--space", "lora", "tune.address=other:1",
                          "--ray-address", "auto"])
    assert code == 0 and seen["cfg"].tune.address == "auto" and seen["space"] == Path("lora")


def test_data_synth_flags_become_their_config_keys(monkeypatch, tmp_path):
    from mmlnb_dist.data import synthetic

    seen = {}

    def make(out, **kwargs):
        seen.update(out=out, **kwargs)
        return {"class_counts": {"UD": 1}, "num_samples": 1, "n_slides": kwargs["n_slides"], "noisy_descriptions": 0}

    monkeypatch.setattr(synthetic, "make_synthetic_dataset", make)
    code, out, _ = run_cli(["data", "synth", "--out", str(tmp_path / "d"), "--n", "30", "--size", "48",
                            "--n-slides", "3", "--noisy-rate", "0.25", "--seed", "9", "--config", "cpu-demo"])
    assert code == 0 and "wrote 1 patches" in out
    assert (seen["out"], seen["n"], seen["size"], seen["n_slides"], seen["noisy_description_rate"], seen["seed"]) == \
        (str(tmp_path / "d"), 30, 48, 3, 0.25, 9)


def test_config_validate_names_the_recipes_and_the_processes(monkeypatch):
    code, out, _ = run_cli(["config", "validate", "--config", "cpu-demo", "--world-size", "2"])
    assert code == 0 and "for fusion and vlm on 2 processes;" in out, out
    code, out, _ = run_cli(["config", "validate", "--config", "cpu-demo", "vlm.finetune=false"])
    assert code == 0 and "for fusion on 1 process;" in out, out
    code, _, err = run_cli(["config", "validate", "--config", "cpu-demo", "--world-size", "3",
                            "train.global_batch_size=8"])  # checked for the processes given, not one
    assert code == 2 and "global batch 8 is not divisible by world size 3" in err, err


def test_slides_tile_flags_become_their_config_keys():
    from mmlnb_dist.cli import parse_arguments
    from mmlnb_dist.commands.slides import _overrides

    args = parse_arguments(["slides", "tile", "--slides", "s", "--labels", "l.csv", "--out", "o", "--magnification",
                            "20", "--max-tiles", "5", "--stain", "macenko"])
    assert sorted(_overrides(args)) == sorted(["slides.magnification=20.0", "slides.sampling.max_tiles_per_slide=5",
                                               "slides.stain.method=macenko", "slides.mpp=null"])
