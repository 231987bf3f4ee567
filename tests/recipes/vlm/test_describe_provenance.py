"""describe records what made its output and refuses to continue it with something else (unless told to start
over); it checks its input shards before any work, skips bad images under the loader's budget, and its manifest
and sizes.json count what it actually wrote."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.core.provenance import ProvenanceError
from mmlnb_dist.data.loader import BadSampleRateError
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError, ShardSet
from mmlnb_dist.data.writer import write_tar_shard
from mmlnb_dist.recipes.vlm.model import adapter_sha256

from support.vlm import make_pairs, write_random_adapter

ROOT = Path(__file__).resolve().parents[3]
PIX = 56 * 56
CLASSES = ["UD", "PD", "D"]


def _cfg(tmp: Path, *extra: str):
    from mmlnb_dist.config import load_config

    return load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
        f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}", f"vlm.cache_dir={tmp / 'cache'}", "vlm.tiny_vision=random",
        "vlm.generation.max_new_tokens=4", "vlm.generation.batch_size=2", "tracking.backends=[stdout]",
        f"run.output_dir={tmp / 'runs'}", *extra])


def make_adapter(tmp: Path, name: str, seed: int) -> Path:
    """A random (non-zero) LoRA adapter for the tiny VLM, saved as finetune-vlm saves one."""
    return write_random_adapter(_cfg(tmp).vlm, tmp / name, seed, PIX)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("describe-prov")
    make_pairs(tmp / "in", n=12, per_shard=4, val_fraction=0.25)
    return tmp


def _texts(out: Path):
    return {s["__key__"]: s["txt"].decode() for f in sorted(out.glob("*.tar")) for s in iter_shard_samples(f)}


def _interrupt_after_first_shard(monkeypatch, D, out: Path):
    real = D.Describer.describe

    def flaky(self, images):
        if list(out.glob("*.tar")):
            raise KeyboardInterrupt("simulated kill")
        return real(self, images)

    monkeypatch.setattr(D.Describer, "describe", flaky)
    return real


def test_resume_with_another_adapter_is_refused_and_restart_starts_over(data, monkeypatch):
    from mmlnb_dist.recipes.vlm import describe as D

    cfg = _cfg(data)
    a, b = make_adapter(data, "adapter-a", 1), make_adapter(data, "adapter-b", 2)
    out = data / "mixed"
    real = _interrupt_after_first_shard(monkeypatch, D, out)
    with pytest.raises(KeyboardInterrupt):
        D.run_describe(cfg, "tiny", str(a), data / "in", out, progress=False)
    monkeypatch.setattr(D.Describer, "describe", real)
    done_by_a = sorted(p.name for p in out.glob("*.tar"))
    assert done_by_a
    with pytest.raises(ProvenanceError, match=r"adapter_sha256") as err:
        D.run_describe(cfg, "tiny", str(b), data / "in", out, progress=False)
    assert "--restart" in str(err.value) and "adapter" in str(err.value)
    assert sorted(p.name for p in out.glob("*.tar")) == done_by_a  # refused before touching anything
    # The same adapter resumes; another prompt is refused too, naming the prompt.
    with pytest.raises(ProvenanceError, match=r"prompt"):
        D.run_describe(_cfg(data, "vlm.prompt=Describe it."), "tiny", str(a), data / "in", out, progress=False)
    # Starting over with B: every description from B, the manifest names B.
    restarted = D.run_describe(cfg, "tiny", str(b), data / "in", out, progress=False, restart=True)
    assert restarted["described_now"] == 12
    whole_b = D.run_describe(cfg, "tiny", str(b), data / "in", data / "whole-b", progress=False)
    assert whole_b["num_samples"] == 12 and _texts(out) == _texts(data / "whole-b")
    prov = ShardSet.open(out).provenance["describe"]
    assert prov["adapter_sha256"] == adapter_sha256(str(b)) != adapter_sha256(str(a))


def test_restart_refuses_to_delete_a_folder_that_is_not_a_describe_output(data):
    from mmlnb_dist.recipes.vlm import describe as D

    precious = data / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    with pytest.raises(ShardError, match=r"notes\.txt"):
        D.run_describe(_cfg(data), "tiny", None, data / "in", precious, progress=False, restart=True)
    assert (precious / "notes.txt").read_text() == "mine"


def test_restart_starts_a_finished_output_over_quality_report_included(data):
    from mmlnb_dist.recipes.vlm import describe as D
    from mmlnb_dist.recipes.vlm.quality import QUALITY_FILE

    out = data / "finished"
    first = D.run_describe(_cfg(data), "tiny", None, data / "in", out, progress=False)
    assert (out / QUALITY_FILE).is_file() and first["described_now"] == 12
    again = D.run_describe(_cfg(data), "tiny", None, data / "in", out, progress=False, restart=True)
    assert again["described_now"] == 12 and (out / QUALITY_FILE).is_file()


def test_truncated_input_shard_stops_describe_before_any_work(data):
    from mmlnb_dist.recipes.vlm import describe as D

    src = data / "short-in"
    make_pairs(src, n=12, per_shard=4, val_fraction=0.25)
    path = src / "train-000001.tar"
    write_tar_shard(path, list(iter_shard_samples(path))[:3], CLASSES)  # cut cleanly between two samples
    with pytest.raises(ShardError, match=r"train-000001\.tar"):
        D.run_describe(_cfg(data), "tiny", None, src, data / "short-out", progress=False)
    assert not list((data / "short-out").glob("*.tar"))


def test_bad_images_are_skipped_under_the_budget_and_the_manifest_counts_what_was_written(data):
    from mmlnb_dist.recipes.vlm import describe as D

    src = data / "bad-in"
    make_pairs(src, n=12, per_shard=4, val_fraction=0.25)
    path = src / "train-000000.tar"
    samples = list(iter_shard_samples(path))
    samples[1]["png"] = b"not an image"
    bad_key = samples[1]["__key__"]
    entry = write_tar_shard(path, samples, CLASSES)  # the altered shard's manifest entry
    shards = ShardSet.open(src)  # re-record the altered shard's checksum so only the image is bad
    manifest = shards.manifest
    for e in manifest["splits"]["train"]["shards"]:
        if e["file"] == path.name:
            e.update(entry)
    (src / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadSampleRateError, match=rf"{path.name}.*{bad_key}"):
        D.run_describe(_cfg(data, "data.loader.max_bad_sample_rate=0.05"), "tiny", None, src, data / "bad-strict",
                       progress=False)
    out = data / "bad-out"
    result = D.run_describe(_cfg(data, "data.loader.max_bad_sample_rate=0.1"), "tiny", None, src, out,
                            progress=False)
    written = _texts(out)
    assert bad_key not in written and len(written) == 11 and result["num_samples"] == 11
    m = ShardSet.open(out).manifest
    counted = {e["file"]: sum(1 for _ in iter_shard_samples(out / e["file"]))
               for info in m["splits"].values() for e in info["shards"]}
    assert {e["file"]: e["num_samples"] for info in m["splits"].values() for e in info["shards"]} == counted
    assert sum(info["num_samples"] for info in m["splits"].values()) == 11
    assert json.loads((out / "sizes.json").read_text()) == counted
    assert [(s["shard"], s["key"]) for s in m["skipped"] if s.get("stage") == "describe"] == [(path.name, bad_key)]


def test_an_adapter_holding_non_finite_weights_is_refused_before_any_description(data, tmp_path):
    """An adapter whose fine-tuning diverged (saved before the stop existed, or by another tool) used to reach
    generation and fail there in torch's sampler ("probability tensor contains either inf, nan or element < 0")
    or write text from NaN logits: refused at load, naming the adapter and its first bad tensor."""
    from safetensors.torch import load_file, save_file

    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.recipes.vlm import describe as D

    adapter = make_adapter(tmp_path, "diverged", 3)
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    name = sorted(k for k in weights if "lora_A" in k)[0]
    weights[name][0, 0] = float("nan")
    save_file(weights, str(adapter / "adapter_model.safetensors"))
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"non-finite") as err:
        D.run_describe(_cfg(data), "tiny", str(adapter), data / "in", out, progress=False)
    assert str(adapter) in str(err.value) and name in str(err.value) and "vlm.lr" in str(err.value)
    assert not list(out.glob("*.tar"))
