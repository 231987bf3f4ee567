"""A description longer than `vlm.max_length` allows was cut with its `<|im_end|>`, and the cut answer still
trained: the model learned not to stop. The cut now keeps `<|im_end|>` as the last supervised label."""
from __future__ import annotations

from mmlnb_dist.recipes.vlm import model as V

from support.vlm import noise_images


def test_a_cut_answer_still_ends_with_end_of_turn_supervised(tiny_56_112):
    _, processor = tiny_56_112
    image = noise_images(0, n=1)[0]
    n_prompt = len(V.encode_prompt(processor, image, "Describe.").input_ids)
    long_answer = " ".join(["neuroblasts in sheets"] * 40)
    enc = V.encode_pair(processor, image, "Describe.", long_answer, n_prompt + 10)
    end = processor.tokenizer.convert_tokens_to_ids(V.END_OF_TURN)
    assert len(enc.input_ids) == n_prompt + 10
    assert enc.labels[-1] == end and enc.input_ids[-1] == end
    short = V.encode_pair(processor, image, "Describe.", "small round cells", n_prompt + 10)
    assert short.labels[-1] == end and len(short.input_ids) < n_prompt + 10


def test_pairs_the_length_cuts_are_counted_exactly_and_named(tiny_56_112, caplog):
    """Which pairs `vlm.max_length` cuts is said at setup with their keys and counted (`data/train_pairs_cut`),
    exactly as `encode_pair` cuts them, for images of different sizes (different prompt lengths)."""
    import io
    import logging

    from PIL import Image

    from mmlnb_dist.recipes.vlm.batches import Pair
    from mmlnb_dist.recipes.vlm.config import VLMConfig
    from mmlnb_dist.recipes.vlm.pair_lengths import pair_counts

    _, processor = tiny_56_112
    small, large = noise_images(1, n=1)[0], noise_images(2, n=1, size=112)[0]

    def png(img):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    n_small = len(V.encode_prompt(processor, small, "Describe.").input_ids)
    n_large = len(V.encode_prompt(processor, large, "Describe.").input_ids)
    assert n_large > n_small
    budget = n_large + 3  # a 3-token answer fits beside the large image, about 12 more beside the small one
    words = {"short": "small round cells", "medium": " ".join(["cells"] * 8), "long": " ".join(["sheets"] * 40)}
    pairs = [Pair(f"{name}-{size}", png(img), text, "UD")
             for name, text in words.items() for size, img in (("s", small), ("l", large))]
    cfg = VLMConfig(prompt="Describe.", max_length=budget, min_pixels=56 * 56, max_pixels=112 * 112)
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist"):
        counts = pair_counts(processor, cfg, {"train": pairs, "val": pairs[:2]})
    full = {p.key: len(processor.tokenizer(p.text + V.END_OF_TURN, add_special_tokens=False)["input_ids"])
            for p in pairs}
    really_cut = [p.key for p in pairs
                  if sum(lab != V.IGNORE_INDEX for lab in V.encode_pair(processor, Image.open(io.BytesIO(p.image)),
                                                                        "Describe.", p.text, budget).labels)
                  < full[p.key]]
    assert {"long-s", "long-l", "medium-l"} <= set(really_cut) and not {"short-s", "medium-s"} & set(really_cut)
    assert counts["data/train_pairs_cut"] == len(really_cut) and counts["data/train_pairs"] == len(pairs)
    assert counts["data/val_pairs_cut"] == len([k for k in really_cut if k in ("short-s", "short-l")])
    (line,) = [r.getMessage() for r in caplog.records if " train pairs are longer than" in r.getMessage()]
    assert line.startswith(f"{len(really_cut)} of {len(pairs)} train pairs") and all(k in line for k in really_cut)


def test_samples_without_a_description_are_said_with_their_keys(tmp_path, caplog):
    """A sample with an empty description is not a pair: it was left out of fine-tuning without a word."""
    import logging

    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.data.map import map_shard_set
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm.batches import read_pairs

    from support.vlm import make_pairs

    src = make_pairs(tmp_path / "pairs", n=16)
    blank = {}  # the same images, one description emptied (a caption the annotators left blank)

    def empty_first(samples):
        out = []
        for s in samples:
            if not blank:
                blank[s["__key__"]] = True
                out.append({"txt": ""})
            else:
                out.append({"txt": s["txt"].decode()})
        return out

    map_shard_set(ShardSet.open(src), tmp_path / "blank", empty_first, env=DistEnv(), batch_size=4, progress=False)
    shards = ShardSet.open(tmp_path / "blank")
    (key,) = blank
    split = next(s for s in ("train", "val") if any(key == k for k in
                                                      [p.key for p in read_pairs(ShardSet.open(src), s)]))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist"):
        pairs = read_pairs(shards, split)
    assert key not in [p.key for p in pairs]
    (line,) = [r.getMessage() for r in caplog.records if "have no description" in r.getMessage()]
    assert line.startswith(f"1 of {len(pairs) + 1} {split} samples") and key in line
