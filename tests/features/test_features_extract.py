"""`features extract`: every sample exactly once (keys compared with the shards themselves), features equal to an
independent per-image reference, across ranks, after a kill, and refusal of an output made otherwise."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from support.processes import run_group
from support.ranks import run_ranks

ROOT = Path(__file__).resolve().parents[2]
SIZE = 24


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from support.shards import make_shard_set

    # 18 samples in shards of at most 4: several train shards and a val shard (odd counts: uneven ranks).
    return make_shard_set(tmp_path_factory.mktemp("shards"), per_class=6, max_per_shard=4, val_fraction=0.25)


def tiny(name: str = "tiny"):
    from mmlnb_dist.models.config import ImageEncoderConfig

    return ImageEncoderConfig(name=name, pretrained=False)


def extract(shards, out, name="tiny", **kw):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import extract_features

    return extract_features(tiny(name), shards, out, env=DistEnv(), seed=0, batch_size=3, loader_image_size=SIZE,
                            progress=False, **kw)


def manifest_keys(shards):
    """Every key of every shard, read from the tars (not from anything the extraction wrote)."""
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet

    s = ShardSet.open(shards)
    return [x["__key__"] for _, _, e in s.entries() for x in iter_shard_samples(s.root / e["file"])]


def reference_features(shards):
    """key -> the encoder's output on one image at a time: PIL resize, [0, 1], the encoder's own mean/std."""
    import numpy as np
    from PIL import Image
    import io

    from mmlnb_dist.core.engine import seed_everything
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.models.encoders import build_image_encoder

    seed_everything(0)
    enc = build_image_encoder(tiny()).eval()
    s = ShardSet.open(shards)
    out = {}
    with torch.no_grad():
        for _, _, e in s.entries():
            for x in iter_shard_samples(s.root / e["file"]):
                img = Image.open(io.BytesIO(x["png"])).convert("RGB")
                if img.size != (SIZE, SIZE):  # the shards hold SIZE x SIZE images: only the crop-free case
                    img = img.resize((SIZE, SIZE), Image.BILINEAR)
                t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
                mean = torch.tensor(enc.mean).view(1, 3, 1, 1)
                std = torch.tensor(enc.std).view(1, 3, 1, 1)
                out[x["__key__"]] = enc((t - mean) / std)[0]
    return out


def table(out):
    from mmlnb_dist.features import load_features

    return load_features(out)


def test_one_process_extracts_every_key_once_equal_to_reference(shards, tmp_path):
    result = extract(shards, tmp_path / "f")
    keys = manifest_keys(shards)
    got = table(tmp_path / "f")
    assert sorted(got) == sorted(keys) and len(keys) == len(set(keys)) == result["num_features"] == 18
    ref = reference_features(shards)
    for k in keys:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5)
    record = json.loads((tmp_path / "f" / "provenance.json").read_text())["record"]
    assert record["identity"]["encoder"]["name"] == "tiny"
    assert record["identity"]["transform"]["image_size"] == SIZE
    assert record["compute"]["dtype"] == "float32" and record["compute"]["versions"]["torch"]
    # Nothing in the output is a pickle: safetensors and JSON only.
    from mmlnb_dist.core.runlock import HOLDER_FILE, LOCK_FILE

    written = {p.suffix for p in (tmp_path / "f").iterdir() if p.name not in (LOCK_FILE, HOLDER_FILE)}
    assert written == {".safetensors", ".json"}


def test_rerun_with_other_provenance_is_refused_naming_what_differs(shards, tmp_path):
    from mmlnb_dist.core.provenance import ProvenanceError

    extract(shards, tmp_path / "f")
    with pytest.raises(ProvenanceError) as err:
        extract(shards, tmp_path / "f", name="uni-tiny", image_size=32)  # (a size uni takes)
    msg = str(err.value)
    assert "identity.encoder.name: 'tiny' -> 'uni-tiny'" in msg and "identity.encoder.weights_digest" in msg
    with pytest.raises(ProvenanceError, match=r"identity\.transform\.image_size: 24 -> 16"):
        extract(shards, tmp_path / "f", image_size=16)


def test_an_extraction_that_fails_before_writing_leaves_no_folder(shards, tmp_path, capsys):
    """An unknown encoder name (a typo: `efficientnet-lite0` for `efficientnet_lite0`) is refused naming the
    choices, and the default output folder it had created (holding only its lock) no longer stays behind to
    look like a started extraction."""
    from mmlnb_dist.cli import main

    out = tmp_path / "f"
    code = main(["features", "extract", "--shards", str(shards), "--out", str(out), "--encoder", "efficientnet-lite0",
                 "data.loader.num_workers=0"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown image encoder 'efficientnet-lite0'; did you mean 'efficientnet_lite0'?" in err
    assert not out.exists()


@pytest.mark.parametrize("typed, meant", [("UNI2-H", "uni2-h"), ("vgg61", "vgg16"), ("Virchow2", "virchow2"),
                                          ("dinov2", None)])
def test_an_unknown_encoder_name_suggests_the_closest(typed, meant):
    from mmlnb_dist.models.encoders import unknown_image_encoder

    message = unknown_image_encoder(typed)
    assert message.startswith(f"unknown image encoder '{typed}'; ") and "choose one of" in message
    assert (f"did you mean '{meant}'?" in message) if meant else ("did you mean" not in message)


def test_rerun_skips_finished_shards_and_redoes_a_torn_file(shards, tmp_path):
    out = tmp_path / "f"
    extract(shards, out)
    before = table(out)
    files = sorted(out.glob("*.safetensors"))
    torn = files[1]
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])  # cut in the middle
    (out / "index.json").unlink()
    result = extract(shards, out)
    from mmlnb_dist.data.shardset import ShardSet

    expected = [e["num_samples"] for _, _, e in ShardSet.open(shards).entries() if e["file"].startswith(torn.stem)]
    assert result["processed_now"] == expected[0]  # only the torn shard was encoded again
    after = table(out)
    assert sorted(after) == sorted(before)
    for k in before:
        assert torch.equal(after[k], before[k])


RANK = """
import json, os, sys
import torch.distributed as dist
rank, shards, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
dist.init_process_group("gloo", rank=rank, world_size=2)
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.features import extract_features
from mmlnb_dist.models.config import ImageEncoderConfig
r = extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, env=DistEnv.from_environment(),
                     seed=0, batch_size=3, loader_image_size=24, progress=False)
open(os.path.join(out, f"result-{rank}.json.done"), "w").write(json.dumps(r))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_ranks_extract_every_sample_once_equal_to_one_process(shards, tmp_path):
    run_ranks(RANK, lambda r: (shards, tmp_path / "two"))
    extract(shards, tmp_path / "one")
    results = [json.loads((tmp_path / "two" / f"result-{r}.json.done").read_text()) for r in range(2)]
    assert results[0]["processed_now"] == 18 and results[0]["num_features"] == 18
    index = json.loads((tmp_path / "two" / "index.json").read_text())
    keys = manifest_keys(shards)
    two, one = table(tmp_path / "two"), table(tmp_path / "one")
    assert sorted(two) == sorted(keys) == sorted(one)
    assert sum(f["num_features"] for f in index["files"]) == len(keys)  # no key in two files
    for k in keys:
        assert torch.equal(two[k], one[k])


GATED = """
import sys, threading, os
from pathlib import Path
shards, out, gate = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
from mmlnb_dist.features import store
write = store.write_shard_features
calls = []
def write_then_stop(path, *a, **kw):
    calls.append(path)
    if len(calls) == 2:  # killed while writing the second shard: a half temporary file, no final name
        path.with_name(path.name + ".999.tmp").write_bytes(b"torn")
        gate.mkdir(parents=True, exist_ok=True)
        (gate / "reached.tmp").write_text(str(path)); (gate / "reached.tmp").replace(gate / "reached")
        threading.Event().wait(900); os._exit(99)
    return write(path, *a, **kw)
store.write_shard_features = write_then_stop
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.features import extract_features
from mmlnb_dist.models.config import ImageEncoderConfig
extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, env=DistEnv(), seed=0,
                 batch_size=3, loader_image_size=24, progress=False)
"""


@pytest.mark.slow
def test_kill_mid_extraction_then_rerun_equals_uninterrupted(shards, tmp_path):
    from support.fusion import kill_at_gate

    out, gate = tmp_path / "killed", tmp_path / "gate"
    proc = subprocess.Popen([sys.executable, "-c", GATED, str(shards), str(out), str(gate)], cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    kill_at_gate(proc, gate)
    assert len(list(out.glob("*.safetensors"))) == 1 and not (out / "index.json").exists()
    result = extract(shards, out)  # the same command again
    assert result["processed_now"] == 18 - 4  # the first shard (4 samples) was kept
    extract(shards, tmp_path / "clean")
    killed, clean = table(out), table(tmp_path / "clean")
    assert sorted(killed) == sorted(clean) == sorted(manifest_keys(shards))
    for k in clean:
        assert torch.equal(killed[k], clean[k])


@pytest.mark.slow
def test_cli_under_torchrun_writes_what_one_process_writes(shards, tmp_path):
    from mmlnb_dist.core.tracking.server import free_port

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "mmlnb_dist.cli", "features", "extract", "--encoder", "tiny", "--shards", str(shards), "--out",
           str(tmp_path / "cli"), "--batch-size", "3", "fusion.model.image_encoder.pretrained=false",
           f"data.loader.image_size={SIZE}", "run.seed=0"]
    proc = run_group(cmd, cwd=ROOT, env=dict(env, OMP_NUM_THREADS="1"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert printed["num_features"] == 18 and printed["processed_now"] == 18
    extract(shards, tmp_path / "one")
    cli, one = table(tmp_path / "cli"), table(tmp_path / "one")
    assert sorted(cli) == sorted(one)
    for k in one:
        assert torch.equal(cli[k], one[k])
