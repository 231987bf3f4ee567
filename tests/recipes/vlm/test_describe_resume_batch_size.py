"""A describe that ran out of memory is continued with a smaller `vlm.generation.batch_size`, as its error says
(`cli.DESCRIBE_MEMORY`): descriptions do not depend on the batch (`sampling.py`, left padding), so the continued
output equals an uninterrupted one. The batch size was part of the output's record, and the rerun the message asked
for was refused unless `--restart` threw the finished batches away."""
from __future__ import annotations

import pytest

from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.recipes.vlm import describe as D

from support.vlm import describe_config, make_pairs


def _texts(out):
    s = ShardSet.open(out)
    return {x["__key__"]: x["txt"].decode() for _, _, e in s.entries() for x in iter_shard_samples(out / e["file"])}


@pytest.mark.parametrize("preset", ["greedy", "authors"])
def test_an_output_begun_at_one_batch_size_is_continued_at_a_smaller_one(tmp_path, monkeypatch, preset):
    make_pairs(tmp_path / "in", n=8, per_shard=4, val_fraction=0.25)
    extra = [f"vlm.generation.preset={preset}"] + (["vlm.generation.temperature=null"] if preset == "greedy" else [])
    whole = D.run_describe(describe_config(tmp_path, "vlm.generation.batch_size=3", *extra), "tiny", None,
                           tmp_path / "in", tmp_path / "whole", progress=False)
    assert whole["num_samples"] == 8

    calls = []
    real = D.Describer.describe

    def out_of_memory_at_the_second_batch(self, images):
        calls.append(len(images))
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, images)

    monkeypatch.setattr(D.Describer, "describe", out_of_memory_at_the_second_batch)
    with pytest.raises(RuntimeError, match="out of memory"):
        D.run_describe(describe_config(tmp_path, "vlm.generation.batch_size=3", *extra), "tiny", None,
                       tmp_path / "in", tmp_path / "cut", progress=False)
    monkeypatch.setattr(D.Describer, "describe", real)
    resumed = D.run_describe(describe_config(tmp_path, "vlm.generation.batch_size=2", *extra), "tiny", None,
                             tmp_path / "in", tmp_path / "cut", progress=False)
    assert resumed["num_samples"] == 8
    assert _texts(tmp_path / "cut") == _texts(tmp_path / "whole")
    assert ShardSet.open(tmp_path / "cut").provenance["describe"]["generation"]["batch_size"] == 2
