"""describe's record of the base VLM's weights (`provenance()["model_weights"]`, `model_revision`): the weights'
bytes decide, not their files' times. A copy of the same weights (a `cp` gives new mtimes) continues an output; new
weights of the same size under an unchanged mtime (a `cp -p` / `rsync -t` of another fine-tune) do not; and a hub id
records the cached snapshot's commit and weights, so a newer revision with other weights pulled into the cache does
not continue an output the older one began (one that left the weights alone does, as does a local copy of them)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mmlnb_dist.core.provenance import ProvenanceError, check_or_record
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.recipes.vlm import describe as D

from support.vlm import ROOT, make_pairs

PIX = 56 * 56


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from mmlnb_dist.config import load_config

    tmp = tmp_path_factory.mktemp("describe-identity")
    make_pairs(tmp / "in", n=4, per_shard=4, val_fraction=0.25)
    cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
        f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}", f"vlm.cache_dir={tmp / 'cache'}", "vlm.tiny_vision=random",
        "tracking.backends=[stdout]", f"run.output_dir={tmp / 'runs'}"])
    tiny = Path(D.provenance(cfg, "tiny", None, ShardSet.open(tmp / "in"), 1)["resolved_model"])
    return cfg, ShardSet.open(tmp / "in"), tiny


def _record(path: Path, cfg, model: str, source) -> None:
    made = D.provenance(cfg, model, None, source, 1)
    check_or_record(path, {"describe": made}, what="out", allow=D.resume_may_change(made))


def test_a_copy_of_the_same_weights_with_new_mtimes_continues_the_output(setup, tmp_path):
    cfg, source, tiny = setup
    first = shutil.copytree(tiny, tmp_path / "vlm-a")
    record = tmp_path / "record.json"
    _record(record, cfg, str(first), source)
    second = Path(shutil.copytree(tiny, tmp_path / "vlm-b", copy_function=shutil.copyfile))  # `cp -r`: new mtimes
    for f in second.glob("*.safetensors"):
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    _record(record, cfg, str(second), source)  # the same bytes: no refusal


def test_new_weights_of_the_same_size_and_mtime_do_not_continue_the_output(setup, tmp_path):
    cfg, source, tiny = setup
    local = Path(shutil.copytree(tiny, tmp_path / "vlm"))
    record = tmp_path / "record.json"
    _record(record, cfg, str(local), source)
    weights = sorted(local.glob("*.safetensors"))[0]
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2  # a tensor in the middle of the file, as a fine-tune of some layers changes
    data[middle:middle + 4096] = bytes((b + 1) % 256 for b in data[middle:middle + 4096])
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # `cp -p`: the old time kept
    assert weights.stat().st_size == st.st_size
    with pytest.raises(ProvenanceError, match="model_weights"):
        _record(record, cfg, str(local), source)


def _hub_cache(cache: Path, repo: str, commit: str, model: Path) -> None:
    """A Hugging Face cache holding `model`'s files as revision `commit` of `repo`, `main` pointing to it."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(model, folder / "snapshots" / commit)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)


def test_a_hub_id_records_its_cached_revision_and_weights(setup, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cfg, source, tiny = setup
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo, old, new = "someorg/some-vlm", "a" * 40, "b" * 40
    _hub_cache(tmp_path / "hub", repo, old, tiny)
    made = D.provenance(cfg, repo, None, source, 1)
    assert made["model_revision"] == old
    assert made["model_weights"] == D.provenance(cfg, str(tiny), None, source, 1)["model_weights"]
    record = tmp_path / "record.json"
    _record(record, cfg, repo, source)
    _record(record, cfg, repo, source)  # the same revision: continues
    _hub_cache(tmp_path / "hub", repo, new, tiny)  # a newer revision pulled; its weights differ
    weights = sorted((tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / new)
                     .glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(8)
    weights.write_bytes(bytes(data))
    with pytest.raises(ProvenanceError, match="model_weights"):  # (the digest decides, not the commit)
        _record(record, cfg, repo, source)


def test_a_hub_output_continues_from_a_local_copy_or_a_newer_commit_of_the_same_weights(setup, tmp_path, monkeypatch):
    """The weights' digest decides (`resume_may_change`): the hub snapshot copied out of the cache and given as a
    folder, or a newer commit that left the weights alone, continue the output; the commit the record named (which a
    folder has not, or which moved) refused both."""
    from huggingface_hub import constants

    cfg, source, tiny = setup
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = "someorg/some-vlm"
    _hub_cache(tmp_path / "hub", repo, "a" * 40, tiny)
    record = tmp_path / "record.json"
    _record(record, cfg, repo, source)
    _record(record, cfg, str(shutil.copytree(tiny, tmp_path / "qwen-local")), source)  # a local copy
    _record(record, cfg, repo, source)
    _hub_cache(tmp_path / "hub", repo, "b" * 40, tiny)  # a README commit: the same weights
    _record(record, cfg, repo, source)
