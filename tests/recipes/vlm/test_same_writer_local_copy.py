"""Whether two describe outputs were written by the same base VLM (`data.text_writer.same_writer`, fed describe's
provenance): a hub id and a local copy of its weights write alike, whatever each is called; a folder whose weights
were replaced since does not, though its name is the same."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.data.text_writer import same_writer, shard_text_writer
from mmlnb_dist.recipes.vlm import describe as D

from support.vlm import ROOT, make_pairs

REPO, COMMIT = "someorg/some-vlm", "c" * 40


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from mmlnb_dist.config import load_config

    tmp = tmp_path_factory.mktemp("same-writer")
    make_pairs(tmp / "in", n=4, per_shard=4, val_fraction=0.25)
    cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
        f"vlm.cache_dir={tmp / 'cache'}", "vlm.tiny_vision=random", "tracking.backends=[stdout]"])
    source = ShardSet.open(tmp / "in")
    tiny = Path(D.provenance(cfg, "tiny", None, source, 1)["resolved_model"])
    folder = tmp / "hub" / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(tiny, folder / "snapshots" / COMMIT)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    return cfg, source, tiny, tmp


def _shard_writer(made):
    return shard_text_writer({"provenance": {"describe": made}})


def test_a_hub_id_and_a_local_copy_of_its_weights_are_the_same_writer(setup, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cfg, source, tiny, tmp = setup
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp / "hub"))
    trained = D.provenance(cfg, REPO, None, source, 1)  # what a classifier's export records (finish.py)
    local = shutil.copytree(tiny, tmp_path / "qwen-local", copy_function=shutil.copyfile)
    assert same_writer(_shard_writer(D.provenance(cfg, str(local), None, source, 1)), trained)
    assert same_writer(trained, _shard_writer(D.provenance(cfg, str(local), None, source, 1)))


def test_a_folder_whose_weights_were_replaced_is_another_writer(setup, tmp_path):
    cfg, source, tiny, _ = setup
    local = Path(shutil.copytree(tiny, tmp_path / "qwen-local"))
    trained = D.provenance(cfg, str(local), None, source, 1)
    weights = sorted(local.glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-4:] = bytes(4)
    weights.write_bytes(bytes(data))
    assert not same_writer(_shard_writer(D.provenance(cfg, str(local), None, source, 1)), trained)
