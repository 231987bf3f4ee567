"""describe: 2 ranks give exactly one description per input sample; an interrupted run resumes to the same
output as an uninterrupted one (the profile samples, drawn per image, so a resumed run re-draws the same text);
manifest provenance and the quality report are written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.vlm import make_pairs, torchrun

PIX = 56 * 56


def _overrides(tmp: Path):
    return [f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}", f"vlm.cache_dir={tmp / 'cache'}",
            "vlm.tiny_vision=random",
            "vlm.generation.max_new_tokens=8", "vlm.generation.batch_size=4", "tracking.backends=[stdout]",
            f"run.output_dir={tmp / 'runs'}"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("describe")
    make_pairs(tmp / "in", n=30, per_shard=6, val_fraction=0.2, test_fraction=0.1)
    return tmp


def _descriptions(out: Path):
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet

    manifest = ShardSet.open(out).manifest
    got = {}
    for split, info in manifest["splits"].items():
        for entry in info["shards"]:
            for s in iter_shard_samples(out / entry["file"]):
                assert s["__key__"] not in got
                got[s["__key__"]] = (split, entry["file"], s["txt"].decode(), json.loads(s["json"]))
    return manifest, got


def _inputs(src: Path):
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet

    manifest = ShardSet.open(src).manifest
    return {s["__key__"]: (split, e["file"], s) for split, info in manifest["splits"].items()
            for e in info["shards"] for s in iter_shard_samples(src / e["file"])}


@pytest.mark.slow
def test_two_ranks_describe_every_sample_once(shards):
    out = shards / "out2"
    proc = torchrun(["describe", "--vlm", "tiny", "--shards", str(shards / "in"), "--out", str(out),
                     "--config", "launch/profiles/cpu-demo.yaml", *_overrides(shards)])
    assert proc.returncode == 0, proc.stderr[-4000:]
    manifest, got = _descriptions(out)
    inputs = _inputs(shards / "in")
    assert set(got) == set(inputs) and len(got) == len(inputs)
    for key, (split, file, src) in inputs.items():
        assert got[key][:2] == (split, file)
        assert got[key][3]["reference_description"] == src["txt"].decode()
        assert got[key][3]["label"] == json.loads(src["json"])["label"]
    prov = manifest["provenance"]["describe"]
    assert prov["world_size"] == 2 and prov["model"] == "tiny" and prov["tiny_vision"] == "random"
    assert prov["generation"]["do_sample"] is True and prov["generation"]["draw"] == "per-image-gumbel"
    assert prov["prompt"].startswith("You are a specialized pathologist")
    report = json.loads((out / "quality_report.json").read_text())
    assert report["n"] == len(inputs) and report["reference"]["n"] == len(inputs)
    assert 0.0 <= report["reference"]["rouge_l"] <= 1.0
    assert not (out / ".progress").exists()


def test_interrupted_run_resumes_to_the_same_output(shards, monkeypatch):
    """A killed describe, run again, describes only the images it had not finished and writes what one run writes:
    otherwise a user loses the hours the VLM spent on every batch the progress file already holds."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.vlm import describe as D

    cfg = load_config("launch/profiles/cpu-demo.yaml", _overrides(shards))
    whole = D.run_describe(cfg, "tiny", None, shards / "in", shards / "whole", progress=False)
    assert whole["num_samples"] == 30

    real = D.Describer.describe

    def flaky(self, images):
        # Killed mid-shard: once a shard is final and another has some of its batches in the progress file.
        out = shards / "resumed"
        if list(out.glob("*.tar")) and any(p.stat().st_size for p in (out / ".progress").glob("*.jsonl")):
            raise KeyboardInterrupt("simulated kill")
        return real(self, images)

    monkeypatch.setattr(D.Describer, "describe", flaky)
    with pytest.raises(KeyboardInterrupt):
        D.run_describe(cfg, "tiny", None, shards / "in", shards / "resumed", progress=False)
    from mmlnb_dist.data.reader import iter_shard_samples

    finished = list((shards / "resumed").glob("*.tar"))
    partial = list((shards / "resumed" / ".progress").glob("*.jsonl"))
    assert finished and len(partial) == 1  # killed mid-shard: earlier shards final, one in progress
    n_finished = sum(1 for f in finished for _ in iter_shard_samples(f))
    n_partial = len(partial[0].read_text().splitlines())
    assert n_partial > 0 and n_partial % 4 == 0  # whole batches only
    assert not (shards / "resumed" / "manifest.json").exists()

    described = []

    def counted(self, images):
        described.append(len(images))
        return real(self, images)

    # The VLM itself is counted, not the progress file: a resume that describes again the batches the progress
    # file holds (hours of generation on a slide set) reports the same `described_now`.
    monkeypatch.setattr(D.Describer, "describe", counted)
    resumed = D.run_describe(cfg, "tiny", None, shards / "in", shards / "resumed", progress=False)
    assert sum(described) == resumed["described_now"] == 30 - n_finished - n_partial  # only what was missing
    _, a = _descriptions(shards / "whole")
    _, b = _descriptions(shards / "resumed")
    assert {k: v[2] for k, v in a.items()} == {k: v[2] for k, v in b.items()}
    for f in (shards / "whole").glob("*.tar"):
        assert f.read_bytes() == (shards / "resumed" / f.name).read_bytes()
