"""A fine-tune begun on a cached hub id resumes after the cache moved to a newer commit that left the weight bytes
alone (a README or tokenizer-config commit): the weights' digest decides, as describe's `same_writer` and its resume
do; the hub commit alone used to refuse it. A newer commit with other weights is still refused."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.recipes.vlm.weights_identity import BASE_RECORD, check_resumed_base, record_base

REPO = "someorg/some-vlm"


def _snapshot(hub, commit, weights):
    folder = hub / f"models--{REPO.replace('/', '--')}"
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / "config.json").write_text("{}")
    (folder / "snapshots" / commit / "model.safetensors").write_bytes(weights)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)


@pytest.fixture()
def began(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    _snapshot(tmp_path / "hub", "c" * 40, b"the weight bytes")
    (tmp_path / "run").mkdir()
    record_base(SimpleNamespace(model=REPO), tmp_path / "run")
    assert json.loads((tmp_path / "run" / BASE_RECORD).read_text())["model_revision"] == "c" * 40
    return tmp_path


def test_a_newer_hub_commit_with_the_same_weights_resumes(began):
    _snapshot(began / "hub", "d" * 40, b"the weight bytes")
    check_resumed_base(SimpleNamespace(model=REPO), began / "run", resuming=True)


def test_a_newer_hub_commit_with_other_weights_is_refused(began):
    _snapshot(began / "hub", "d" * 40, b"other weight bytes")
    with pytest.raises(UserError, match="model_weights"):
        check_resumed_base(SimpleNamespace(model=REPO), began / "run", resuming=True)


def _stored(run_dir, model):
    """The run's config.yaml as `core.recipe` stores it, begun on `model`."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.config import save_config

    cfg = load_config(None, [f"vlm.model={model}", f"run.output_dir={run_dir.parent}", f"run.name={run_dir.name}"])
    save_config(cfg, run_dir / "config.yaml")
    return cfg


def test_a_hub_run_resumed_from_a_local_copy_of_its_weights_continues(began, tmp_path):
    """The hub snapshot copied to a folder (an offline node) and named as vlm.model: the same bytes, resumed; the
    recipe lets the name change (`resume_may_change`), the digest decides."""
    import shutil

    from mmlnb_dist.core.recipe import check_resume_config
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    cfg = _stored(began / "run", REPO)
    local = shutil.copytree(began / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / ("c" * 40),
                            tmp_path / "qwen-local")
    check_resumed_base(SimpleNamespace(model=str(local)), began / "run", resuming=True)
    check_resume_config(cfg.model_copy(update={"vlm": cfg.vlm.model_copy(update={"model": str(local)})}),
                        began / "run", FinetuneVLMRecipe, record=False)


def test_another_name_of_other_weights_is_refused(began, tmp_path):
    _stored(began / "run", REPO)
    other = tmp_path / "qwen-other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"other weight bytes")
    with pytest.raises(UserError, match=r"vlm\.model: someorg/some-vlm -> .*qwen-other"):
        check_resumed_base(SimpleNamespace(model=str(other)), began / "run", resuming=True)
    with pytest.raises(UserError, match=r"vlm\.model: someorg/some-vlm -> tiny"):
        check_resumed_base(SimpleNamespace(model="tiny"), began / "run", resuming=True)
