"""A shard's features are written under a temporary name and renamed: a write that fails (disk full) must not
leave its half-written temporary file behind, and a rerun removes those a killed run left (they hold no usable
features and take the disk space a rerun after "disk full" needs)."""
from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from support.shards import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("set"), per_class=2, max_per_shard=4, val_fraction=0.25)


def extract(shards, out):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    return extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, env=DistEnv(), seed=0,
                            batch_size=4, loader_image_size=24, progress=False)


def test_a_write_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    import safetensors.torch

    from mmlnb_dist.features.store import write_shard_features

    def torn(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", torn)
    with pytest.raises(OSError, match="disk full"):
        write_shard_features(tmp_path / "a.safetensors", ["k"], torch.ones(1, 3), shard_sha256="x", skipped=[],
                             split="train", images={"k": "d"})
    assert list(tmp_path.iterdir()) == []


def test_a_rerun_removes_what_a_killed_write_left_and_keeps_other_files(shards, tmp_path):
    from mmlnb_dist.features.store import read_shard_features

    out = tmp_path / "f"
    extract(shards, out)
    first = sorted(out.glob("*.safetensors"))[0]
    keys, feats, _ = read_shard_features(first)
    first.unlink()
    leftover = out / f"{first.name}.4242.tmp"  # a SIGKILLed run's half-written file (another pid)
    leftover.write_bytes(b"half")
    result = extract(shards, out)
    assert result["processed_now"] == len(keys)
    assert not leftover.exists() and not list(out.glob("*.tmp"))
    again, feats_again, _ = read_shard_features(first)
    assert again == keys and torch.equal(feats_again, feats)
    assert (out / "index.json").is_file() and (out / "provenance.json").is_file()


def test_only_temporaries_of_this_shard_set_s_feature_files_are_removed(tmp_path):
    from mmlnb_dist.features.store import remove_temporaries

    ours, other, odd = (tmp_path / n for n in ("train-000000.safetensors.77.tmp", "notes.safetensors.77.tmp",
                                                "train-000000.safetensors.backup.tmp"))
    for path in (ours, other, odd):
        path.write_bytes(b"x")
    remove_temporaries(tmp_path, ["train-000000.tar", "val-000000.tar"])
    assert not ours.exists() and other.exists() and odd.exists()


def test_a_full_disk_is_reported_as_one_line_and_the_rerun_continues(shards, tmp_path, monkeypatch):
    # safetensors reports a full disk as its own SafetensorError ("... (os error 28)"), not an OSError: the CLI's
    # disk-full message (free space, run the same command again) did not apply and a traceback came out.
    import safetensors.torch
    from safetensors import SafetensorError

    from support.cli import run_cli

    from mmlnb_dist.features.store import read_shard_features

    real = safetensors.torch.save_file
    calls = []

    def full_on_second(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            with open(filename, "wb") as f:
                f.write(b"half")
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", full_on_second)
    out = tmp_path / "f"
    args = ["features", "extract", "--encoder", "tiny", "--shards", str(shards), "--out", str(out), "--batch-size",
            "4", "data.loader.num_workers=0"]
    code, _, err = run_cli(args)
    assert code == 1 and "no space left on device" in err.lower() and "run the same command again" in err
    kept = list(out.glob("*.safetensors"))
    assert len(kept) == 1 and not list(out.glob("*.tmp"))
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    code, stdout, err = run_cli(args)
    assert code == 0, err
    result = json.loads(stdout[stdout.index("{"):])
    assert result["num_features"] == 6  # the first shard's file was kept, the rest computed now
    assert result["processed_now"] == 6 - len(read_shard_features(kept[0])[0])


def test_ctrl_c_during_a_write_reaches_the_caller_as_itself(tmp_path, monkeypatch):
    """Only safetensors' disk errors become an OSError: a Ctrl-C is re-raised unchanged (not chained to itself)."""
    import safetensors.torch

    from mmlnb_dist.features.store import write_shard_features

    def interrupted(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        write_shard_features(tmp_path / "a.safetensors", ["k"], torch.ones(1, 3), shard_sha256="x", skipped=[],
                             split="train", images={"k": "d"})
    assert caught.value.__cause__ is None and list(tmp_path.iterdir()) == []
