"""`vlm.generation.merge_adapter` decides how the adapter is applied: folded into the base weights, or beside them.
In bf16/fp16 (describe on a GPU) the two round differently, so greedy text differs, yet the setting was not in the
output's provenance: a describe output continued with the other setting held two decodings under one record. An
adapter described beside the base (merge_adapter=false) is now recorded and a continuation with the other setting
is refused; the default (merged) is left out of the record, so outputs recorded before continue."""
from __future__ import annotations

import pytest
import torch

from support.vlm import ROOT, write_random_adapter

PIX = 56 * 56


def _cfg(tmp, *extra):
    from mmlnb_dist.config import load_config

    return load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
        f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}", f"vlm.cache_dir={tmp / 'cache'}", "vlm.tiny_vision=random",
        *extra])


def test_an_output_continued_with_the_other_merge_setting_is_refused(tmp_path):
    from mmlnb_dist.core.provenance import ProvenanceError, check_or_record
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm.describe import RESUME_MAY_CHANGE, provenance

    from support.fusion import make_shards

    merged, beside = _cfg(tmp_path), _cfg(tmp_path, "vlm.generation.merge_adapter=false")
    adapter = str(write_random_adapter(merged.vlm, tmp_path / "adapter", seed=0, pixels=PIX))
    source = ShardSet.open(make_shards(tmp_path / "s", n=6, size=32))

    def record(cfg, adapter=adapter):
        return {"describe": provenance(cfg, "tiny", adapter, source, 1, torch.bfloat16)}

    check_or_record(tmp_path / "a.json", record(merged), what="out", allow=RESUME_MAY_CHANGE)
    with pytest.raises(ProvenanceError, match="merge_adapter"):
        check_or_record(tmp_path / "a.json", record(beside), what="out", allow=RESUME_MAY_CHANGE)
    check_or_record(tmp_path / "b.json", record(beside), what="out", allow=RESUME_MAY_CHANGE)
    with pytest.raises(ProvenanceError, match="merge_adapter"):
        check_or_record(tmp_path / "b.json", record(merged), what="out", allow=RESUME_MAY_CHANGE)
    assert "merge_adapter" not in record(merged)["describe"]["generation"]  # as recorded before
    assert "merge_adapter" not in record(beside, adapter=None)["describe"]["generation"]  # no adapter: moot
