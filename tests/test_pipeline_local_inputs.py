"""A stage is rebuilt when a local file or folder its settings name changes, not only when the setting does.

The train and fine-tune stages fingerprinted their config sections, which name such inputs by path: a user who
extracted features again into the same `fusion.image_features` folder (another encoder), replaced the weights file
at `clip.image_encoder_weights_path`, or the local model folder at `vlm.model`, had the pipeline say "up to date"
and keep the model trained on the old ones."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmlnb_dist.core.recipe import TRAIN_CADENCE
from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline import steps
from mmlnb_dist.pipeline.stages import StageResult

SHARDS = StageResult("shards", Path("/data/shards"), "fp-shards", True, 0.0, {}, status="skipped")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, ns=(10**18, 10**18))  # the same time on every write: only the content differs


def _train_fp(tmp_path, profile, key, value):
    cfg = load_config(profile, [f"run.output_dir={tmp_path / 'runs'}", f"{key}={value}"])
    return steps.plan_train(cfg, SHARDS).fingerprint


@pytest.mark.parametrize("profile, key, name", [("cpu-demo", "fusion.image_features", "features/part-0.npy"),
                                                ("clip-demo", "clip.model.image_encoder_weights_path", "weights.pt")])
def test_the_train_stage_changes_with_what_a_local_input_holds(tmp_path, profile, key, name):
    target = tmp_path / "inputs" / name
    named = target.parent if "/" in name else target  # a folder setting names the folder
    _write(target, "first")
    first = _train_fp(tmp_path, profile, key, named)
    assert _train_fp(tmp_path, profile, key, named) == first  # untouched: up to date
    _write(target, "second, longer")
    assert _train_fp(tmp_path, profile, key, named) != first


def test_the_fine_tune_changes_with_what_a_local_model_folder_holds(tmp_path):
    model = tmp_path / "qwen"
    _write(model / "config.json", "{}")

    def fp():  # the fine-tune's, and the base VLM's (vlm.finetune=false: its descriptions)
        cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}", f"vlm.model={model}"])
        return steps.plan_finetune_vlm(cfg, SHARDS).fingerprint, steps.base_vlm_stage(cfg).fingerprint

    first = fp()
    assert fp() == first
    _write(model / "model.safetensors", "weights")
    assert all(now != before for now, before in zip(fp(), first))


def test_a_hub_name_keeps_the_fingerprint_it_had():
    """A setting that names no local path adds nothing: runs made before this check stay up to date."""
    cfg = load_config("cpu-demo", ["run.output_dir=/nowhere"])
    plain = steps.fingerprint("train", SHARDS.fingerprint, cfg.run.seed, cfg.fusion.model_dump(),
                              cfg.train.model_dump(exclude=TRAIN_CADENCE["train"]), cfg.distributed.results_dump(),
                              cfg.data.loader.model_dump(exclude=TRAIN_CADENCE["data.loader"]))
    assert steps.plan_train(cfg, SHARDS).fingerprint == plain


def test_a_study_row_changes_with_what_a_local_input_holds(tmp_path):
    """`ablate` skips a row whose fingerprint it finds done: features extracted again must train it again."""
    from mmlnb_dist.studies.fingerprints import job_fingerprint

    features = tmp_path / "features"
    _write(features / "part-0.npy", "first")

    def fp():
        return job_fingerprint(load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}",
                                                        f"fusion.image_features={features}"]))

    first = fp()
    assert fp() == first
    _write(features / "part-0.npy", "second, longer")
    assert fp() != first
