"""describe's output record and resume (`recipes/vlm/describe.py`): what a written sample holds, which settings a
continued output must share (and which it may change: the ranks, where the adapter lives), and that the VLM is
loaded once per run and not at all when nothing is left to describe. The random tiny VLM, in-process."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from mmlnb_dist.core.provenance import ProvenanceError, check_or_record
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.recipes.vlm import describe as D

from support.vlm import ROOT, make_pairs, noise_images, write_random_adapter

PIX = 56 * 56


def _cfg(tmp: Path, *extra: str):
    from mmlnb_dist.config import load_config

    return load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
        f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}", f"vlm.cache_dir={tmp / 'cache'}", "vlm.tiny_vision=random",
        "vlm.generation.max_new_tokens=4", "vlm.generation.batch_size=2", "tracking.backends=[stdout]",
        f"run.output_dir={tmp / 'runs'}", *extra])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit-describe")
    make_pairs(tmp / "in", n=12, per_shard=4, val_fraction=0.25)
    return tmp


def test_a_described_sample_keeps_its_metadata_and_its_old_description_as_reference():
    """The new `txt` is the generated text; the `json` keeps every field (the label among them) and gains the
    former description, so quality figures can compare against it."""
    sample = {"json": json.dumps({"label": "PD", "slide_id": "s1"}).encode(), "txt": "nests of small cells".encode()}
    got = D.described(sample, "a new description")
    assert got["txt"] == "a new description"
    assert json.loads(got["json"]) == {"label": "PD", "slide_id": "s1", "reference_description": "nests of small cells"}
    bare = D.described({"png": b""}, "text")
    assert json.loads(bare["json"]) == {} and bare["txt"] == "text"
    accented = D.described({"txt": "névroblastome".encode()}, "x")
    assert "névroblastome" in accented["json"]  # kept readable, not \\u-escaped


def _refused_key(cfg_a, cfg_b, data, tmp_path):
    """The first key check_or_record names between the records of two configs (None: the same record)."""
    source = ShardSet.open(data / "in")
    record = tmp_path / f"p{len(list(tmp_path.iterdir()))}.json"
    check_or_record(record, {"describe": D.provenance(cfg_a, "tiny", None, source, 1)}, what="out",
                    allow=D.RESUME_MAY_CHANGE)
    try:
        check_or_record(record, {"describe": D.provenance(cfg_b, "tiny", None, source, 2)}, what="out",
                        allow=D.RESUME_MAY_CHANGE)
    except ProvenanceError as err:
        return str(err)
    return None


@pytest.mark.parametrize("override, key", [
    ("vlm.generation.max_new_tokens=8", "max_new_tokens"),
    (f"vlm.min_pixels={28 * 28}", "min_pixels"), (f"vlm.max_pixels={112 * 112}", "max_pixels"),
    ("vlm.generation.preset=greedy vlm.generation.temperature=null", "do_sample")])
def test_a_continued_output_must_share_the_generation_settings_and_pixel_bounds(data, tmp_path, override, key):
    """Each of these changes what is written: a continued output made with another value would mix two writers.
    The ranks and the batch size may change (world_size 1 -> 2 is allowed; a description does not depend on its
    batch: test_describe_resume_batch_size.py)."""
    base = _cfg(data, "vlm.generation.preset=authors")
    assert _refused_key(base, base, data, tmp_path) is None
    assert _refused_key(base, _cfg(data, "vlm.generation.preset=authors", "vlm.generation.batch_size=3"), data,
                        tmp_path) is None
    message = _refused_key(base, _cfg(data, "vlm.generation.preset=authors", *override.split()), data, tmp_path)
    assert message is not None and key in message, message


def test_the_record_holds_the_model_config_digest_and_the_draw_only_when_sampling(data):
    cfg = _cfg(data, "vlm.generation.preset=authors")
    source = ShardSet.open(data / "in")
    prov = D.provenance(cfg, "tiny", None, source, 1)
    config = Path(prov["resolved_model"]) / "config.json"
    assert prov["model_config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert prov["generation"]["draw"] == "per-image-gumbel" and prov["source_manifest_sha256"] == source.digest
    greedy_cfg = _cfg(data, "vlm.generation.preset=greedy", "vlm.generation.temperature=null")
    greedy = D.provenance(greedy_cfg, "tiny", None, source, 1)
    assert greedy["generation"]["do_sample"] is False and "draw" not in greedy["generation"]
    assert D.provenance(cfg, "tiny", None, source, 1, torch.float16)["dtype"] == "float16"


def test_the_class_naming_keywords_are_used_only_for_the_synthetic_classes(data, tmp_path):
    from mmlnb_dist.data.synthetic import CLASS_KEYWORDS

    source = ShardSet.open(data / "in")
    assert set(source.classes) == set(CLASS_KEYWORDS)
    assert D.naming_keywords(source) == dict(CLASS_KEYWORDS)
    other = tmp_path / "other"
    shutil.copytree(data / "in", other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["classes"] = ["UD", "PD", "tumour"]
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert D.naming_keywords(ShardSet.open(other)) is None


@pytest.fixture(scope="module")
def adapter(data):
    return write_random_adapter(_cfg(data).vlm, data / "adapter", 5, PIX)


def test_an_adapter_changes_the_descriptions_exactly_as_loading_it_by_hand_does(data, adapter):
    """describe generates with the fine-tuned adapter it is given (the base model's text would pass for it in every
    resume and provenance check), the same text as the base model with the adapter loaded by hand."""
    from mmlnb_dist.recipes.vlm import model as V

    cfg = _cfg(data, "vlm.generation.preset=greedy", "vlm.generation.temperature=null")
    images = noise_images(4, n=2)
    tuned = D.describe_images(images, "tiny", str(adapter), cfg.vlm)
    model, processor = V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=cfg.vlm.cache_dir,
                                  tiny_vision=cfg.vlm.tiny_vision)
    model = V.load_adapter(model, str(adapter)).eval()
    assert V.generate_descriptions(model, processor, images, cfg.vlm.prompt, cfg.vlm.generation) == tuned
    with model.disable_adapter():
        assert V.generate_descriptions(model, processor, images, cfg.vlm.prompt, cfg.vlm.generation) != tuned


class _Fake:
    """Stands in for the VLM: each image's text is a digest of its bytes (so a text given to another sample shows);
    counts how often the model would be loaded."""
    loads: list = []

    def __init__(self, *args, **kwargs):
        _Fake.loads.append(args)

    def describe(self, images):
        return [f"d-{hashlib.sha256(im).hexdigest()[:12]}" for im in images]


def _members(out: Path):
    return {s["__key__"]: s for f in sorted(out.glob("*.tar")) for s in iter_shard_samples(f)}


def _texts(out: Path):
    return {k: s["txt"].decode() for k, s in _members(out).items()}


def test_a_batch_with_an_unreadable_image_first_gives_every_other_sample_its_own_text(data, tmp_path, monkeypatch):
    """The skipped image leaves a gap in the batch sent to the VLM: each text must still go to its own sample."""
    from mmlnb_dist.data.writer import write_tar_shard

    src = tmp_path / "in"
    shutil.copytree(data / "in", src)
    path = src / "train-000000.tar"
    samples = list(iter_shard_samples(path))
    samples[0]["png"] = b"not an image"
    entry = write_tar_shard(path, samples, ["UD", "PD", "D"])  # the altered shard's manifest entry
    manifest = json.loads((src / "manifest.json").read_text())
    for e in manifest["splits"]["train"]["shards"]:
        if e["file"] == path.name:
            e.update(entry)
    (src / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(D, "Describer", _Fake)
    cfg = _cfg(data, "vlm.generation.batch_size=4", "data.loader.max_bad_sample_rate=0.1")
    result = D.run_describe(cfg, "tiny", None, src, tmp_path / "out", progress=False)
    written = _members(tmp_path / "out")
    assert result["num_samples"] == 11 and samples[0]["__key__"] not in written
    assert {k: s["txt"].decode() for k, s in written.items()} == {k: _Fake.describe(None, [s["png"]])[0]
                                                                  for k, s in written.items()}


def test_a_resume_on_other_ranks_with_the_adapter_moved_continues_and_loads_the_model_once(data, adapter,
                                                                                          monkeypatch):
    """An output begun on 2 ranks, continued on 1 with the same adapter copied elsewhere (digest unchanged): it
    continues (ranks and adapter path may change), describes only what was missing, loading the VLM once, and a
    finished output is not described again nor the VLM loaded (test_describe.py compares a resume's text)."""
    cfg = _cfg(data)
    out = data / "cut"
    monkeypatch.setattr(D, "Describer", _Fake)
    real = _Fake.describe

    def flaky(self, images):
        if list(out.glob("*.tar")):
            raise KeyboardInterrupt("simulated kill")
        return real(self, images)

    monkeypatch.setattr(_Fake, "describe", flaky)
    with pytest.raises(KeyboardInterrupt):
        D.run_describe(cfg, "tiny", str(adapter), data / "in", out, progress=False)
    monkeypatch.setattr(_Fake, "describe", real)
    done = _texts(out)
    record = json.loads((out / "provenance.json").read_text())
    record["record"]["describe"]["world_size"] = 2  # begun by a two-rank job
    (out / "provenance.json").write_text(json.dumps(record))
    moved = shutil.copytree(adapter, data / "moved" / "adapter")
    _Fake.loads.clear()
    resumed = D.run_describe(cfg, "tiny", str(moved), data / "in", out, progress=False)
    assert len(_Fake.loads) == 1 and _Fake.loads[0][2] == str(moved)
    assert 0 < len(done) == 12 - resumed["described_now"] and resumed["num_samples"] == 12
    assert set(done.items()) <= set(_texts(out).items()) and len(_texts(out)) == 12
    assert ShardSet.open(out).provenance["describe"]["adapter"] == str(moved)
    again = D.run_describe(cfg, "tiny", str(moved), data / "in", out, progress=False)
    assert again["described_now"] == 0 and len(_Fake.loads) == 1


def test_a_local_model_whose_weights_were_replaced_under_the_same_config_does_not_continue_an_output(data, tmp_path):
    """The config digest alone let a folder with new weights (a fine-tune saved over it) continue an output that
    the old weights began: two models' descriptions under one name."""
    cfg = _cfg(data, "vlm.generation.preset=authors")
    source = ShardSet.open(data / "in")
    local = tmp_path / "local-vlm"
    shutil.copytree(D.provenance(cfg, "tiny", None, source, 1)["resolved_model"], local)
    record = tmp_path / "record.json"
    check_or_record(record, {"describe": D.provenance(cfg, str(local), None, source, 1)}, what="out",
                    allow=D.RESUME_MAY_CHANGE)
    check_or_record(record, {"describe": D.provenance(cfg, str(local), None, source, 1)}, what="out",
                    allow=D.RESUME_MAY_CHANGE)  # the same files: continues
    weights = sorted(local.glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())  # new weights, the same size and config
    data[-4:] = bytes(4)
    weights.write_bytes(bytes(data))
    with pytest.raises(ProvenanceError, match="model_weights"):
        check_or_record(record, {"describe": D.provenance(cfg, str(local), None, source, 1)}, what="out",
                        allow=D.RESUME_MAY_CHANGE)
