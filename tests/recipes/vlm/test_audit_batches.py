"""The fine-tune's data plumbing (`recipes/vlm/batches.py`) against references: step counts, the per-step indices
(numpy's permutation), the token weights of the loss (answer tokens counted by hand, over ranks), the data-order
truncation of a resume, the dropout seeds, and which samples are pairs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.recipes.vlm import batches as B
from mmlnb_dist.recipes.vlm import model as V
from mmlnb_dist.recipes.vlm.config import VLMConfig

IGN = V.IGNORE_INDEX


def test_total_steps_drop_an_epochs_partial_batch_and_max_steps_wins():
    assert B.total_steps(VLMConfig(epochs=3, max_steps=None, global_batch_size=4), 10) == 6  # 2 full batches
    assert B.total_steps(VLMConfig(epochs=1, max_steps=None, global_batch_size=4), 3) == 0
    assert B.total_steps(VLMConfig(epochs=3, max_steps=7, global_batch_size=4), 10) == 7


def test_step_indices_are_numpys_permutation_per_epoch_sliced_by_step():
    """Step s of an epoch takes the s-th global batch of permutation (seed, epoch); the leftover of an epoch is
    never taken, the next epoch reshuffles, and another seed gives another order."""
    n, gb, seed = 10, 3, 7
    per_epoch = n // gb
    for epoch in range(3):
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        for within in range(per_epoch):
            step = epoch * per_epoch + within
            assert B.step_indices(n, gb, step, seed) == perm[within * gb:(within + 1) * gb].tolist()
        taken = [i for w in range(per_epoch) for i in B.step_indices(n, gb, epoch * per_epoch + w, seed)]
        assert len(taken) == len(set(taken)) == per_epoch * gb
    epoch0 = [B.step_indices(n, gb, s, seed) for s in range(per_epoch)]
    epoch1 = [B.step_indices(n, gb, per_epoch + s, seed) for s in range(per_epoch)]
    assert epoch0 != epoch1
    assert epoch0 != [B.step_indices(n, gb, s, seed + 1) for s in range(per_epoch)]


def _labels(*answer_lengths, length=9):
    rows = []
    for a in answer_lengths:
        row = [IGN] * length
        for j in range(length - a, length):
            row[j] = 5
        rows.append(row)
    return {"labels": torch.tensor(rows)}


def test_token_weights_make_the_step_a_mean_over_answer_tokens():
    """Weights = answer tokens of the micro batch x accumulation x world size / answer tokens of the step: then
    DeepSpeed's (sum / accumulation, mean over ranks) of weighted micro-batch means is the token mean."""
    batches = [_labels(2, 4), _labels(1), _labels(3, 3, 3)]
    weights = B.token_weights(DistEnv(), batches, accumulation=3)
    assert weights == pytest.approx([6 * 3 / 16, 1 * 3 / 16, 9 * 3 / 16])
    # the weighted micro-batch means, as DeepSpeed sums them, equal the mean over every answer token
    rng = np.random.default_rng(0)
    per_token = [rng.normal(size=int((b["labels"] != IGN).sum())) for b in batches]
    step_loss = sum(w * t.mean() for w, t in zip(weights, per_token)) / 3
    assert step_loss == pytest.approx(np.concatenate(per_token).mean())


def test_token_weights_count_the_other_ranks_tokens(monkeypatch):
    """On 2 ranks the total is the all-reduced token count (this rank 6 tokens, the other 10): weights carry the
    world size so that the ranks' average of gradients stays the mean over the step's 16 tokens."""
    seen = []

    def reduced(env, tensor):
        seen.append(float(tensor))
        return tensor + 10.0  # the other rank's 10 answer tokens

    monkeypatch.setattr(B, "all_reduce_sum", reduced)
    weights = B.token_weights(DistEnv(rank=0, world_size=2), [_labels(2, 1), _labels(3)], accumulation=2)
    assert seen == [6.0]
    assert weights == pytest.approx([3 * 2 * 2 / 16, 3 * 2 * 2 / 16])


def test_truncate_data_order_keeps_only_the_steps_before_the_start(tmp_path):
    path = tmp_path / "data_order.jsonl"
    path.write_text("".join(json.dumps({"step": s, "keys": [f"k{s}"]}) + "\n" for s in range(6)) + "\n")
    B.truncate_data_order(path, 3)
    assert [json.loads(ln)["step"] for ln in path.read_text().splitlines()] == [0, 1, 2]
    B.truncate_data_order(tmp_path / "absent.jsonl", 3)
    assert not (tmp_path / "absent.jsonl").exists()


def test_step_seeds_differ_per_micro_batch_and_step_and_repeat():
    seeds = {(s, m): B.step_seed(0, s, m) for s in range(4) for m in range(4)}
    assert len(set(seeds.values())) == 16
    assert all(B.step_seed(0, s, m) == v for (s, m), v in seeds.items())
    assert B.step_seed(1, 0, 0) != seeds[0, 0]
    assert all(0 <= v < 2 ** 63 for v in seeds.values())


def _shard_with(tmp_path, edits):
    """The first train shard of a small pair set rewritten with `edits` (index -> member changes; None: drop)."""
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.data.writer import write_tar_shard

    from support.vlm import make_pairs

    src = make_pairs(tmp_path / "pairs", n=12, per_shard=4, val_fraction=0.25)
    path = src / "train-000000.tar"
    samples = list(iter_shard_samples(path))
    for i, change in edits.items():
        for member, value in change.items():
            if value is None:
                samples[i].pop(member)
            else:
                samples[i][member] = value
    entry = write_tar_shard(path, samples, ["UD", "PD", "D"])  # the altered shard's manifest entry
    manifest = ShardSet.open(src).manifest
    for e in manifest["splits"]["train"]["shards"]:
        if e["file"] == path.name:
            e.update(entry)
    (src / "manifest.json").write_text(json.dumps(manifest))
    return ShardSet.open(src), [s["__key__"] for s in samples]


def test_blank_descriptions_and_imageless_samples_are_not_pairs_and_count_pairs_agrees(tmp_path):
    """A whitespace-only caption trains the model to say nothing, a sample without an image cannot be encoded:
    neither is a pair, and `count_pairs` (the config checks' count, which sets the schedule's length) agrees."""
    shards, keys = _shard_with(tmp_path, {0: {"txt": b"  \n "}, 2: {"png": None}})
    pairs = B.read_pairs(shards, "train")
    got = [p.key for p in pairs]
    assert keys[0] not in got and keys[2] not in got and keys[1] in got and keys[3] in got
    n_train = shards.manifest["splits"]["train"]["num_samples"]
    assert B.count_pairs(shards, "train") == len(pairs) == n_train - 2
    assert all(p.text == p.text.strip() and p.text for p in pairs)
    assert B.read_pairs(shards, "test") == [] and B.count_pairs(shards, "test") == 0


def test_the_pair_encoder_cuts_at_vlm_max_length_and_caches_only_what_fits(tiny_56_112):
    """`pair_encoder` encodes with the section's prompt and `vlm.max_length` (a long answer is cut to it), and keeps
    an encoding in memory only when every pair's would fit in the cache budget."""
    import io

    from support.vlm import noise_images

    _, processor = tiny_56_112
    buf = io.BytesIO()
    noise_images(0, n=1)[0].save(buf, format="PNG")
    n_prompt = len(V.encode_prompt(processor, noise_images(0, n=1)[0], "Describe.").input_ids)
    pair = B.Pair("k0", buf.getvalue(), " ".join(["sheets of cells"] * 30), "UD")
    vcfg = VLMConfig(prompt="Describe.", max_length=n_prompt + 6, min_pixels=56 * 56, max_pixels=112 * 112)
    encode = B.pair_encoder(processor, vcfg, n_pairs=2)
    (enc,) = encode([pair])
    assert len(enc.input_ids) == n_prompt + 6 and encode([pair])[0] is enc and list(encode.cache) == ["k0"]
    size = enc.pixel_values.numel() * enc.pixel_values.element_size()
    small = B.PairEncoder(processor, "Describe.", n_prompt + 6, n_pairs=2, cache_bytes=2 * size - 1)
    small([pair])
    assert small.cache == {}

