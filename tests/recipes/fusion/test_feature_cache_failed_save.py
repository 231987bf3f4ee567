"""The disk feature cache writes its table under a unique temporary name and renames it: a save that fails (disk
full, Ctrl-C) must leave neither a temporary file (each failed run would leave one more, of a whole split's
features, in a folder shared by runs) nor a damaged table, and the previous table stays readable."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.recipes.fusion.features import FeatureCache


def test_a_failed_save_leaves_no_temporary_and_the_previous_table(tmp_path, monkeypatch):
    import safetensors.torch

    cache = FeatureCache("image", "abc", tmp_path, provenance={"shards": "d1"})
    cache.put(["k1", "k2"], torch.ones(2, 3))
    assert cache.save() == tmp_path / "image-abc.safetensors"

    def torn(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", torn)
    cache.put(["k3"], torch.zeros(1, 3))
    with pytest.raises(OSError, match="No space left"):
        cache.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image-abc.safetensors"]
    monkeypatch.undo()
    again = FeatureCache("image", "abc", tmp_path, provenance={"shards": "d1"})
    assert again.load() and sorted(again.items()) == ["k1", "k2"]
    assert torch.equal(again.stacked(["k1", "k2"]), torch.ones(2, 3))


def test_a_full_disk_is_raised_as_the_os_error_it_is(tmp_path, monkeypatch):
    # safetensors wraps it in its own SafetensorError, which the CLI's disk-full message does not recognise
    import errno

    import safetensors.torch
    from safetensors import SafetensorError

    def full(tensors, filename, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    cache = FeatureCache("image", "abc", tmp_path)
    cache.put(["k1"], torch.ones(1, 3))
    with pytest.raises(OSError) as err:
        cache.save()
    assert err.value.errno == errno.ENOSPC and str(tmp_path) in err.value.filename
    assert list(tmp_path.iterdir()) == []
