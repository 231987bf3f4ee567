"""Two pairs under one key (a train and a val sample of a hand-merged shard set; keys are unique only per shard
file): the pair encoder's cache, keyed by the sample key, gave the second pair the first one's encoding, so the
validation loss was computed on a train pair's text and image without a word. Each pair is now encoded as itself."""
from __future__ import annotations

import io


def _png(seed: int) -> bytes:
    from support.vlm import noise_images

    buf = io.BytesIO()
    noise_images(seed, n=1)[0].save(buf, format="PNG")
    return buf.getvalue()


def test_a_second_pair_under_the_same_key_gets_its_own_encoding(tiny):
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.batches import Pair, PairEncoder

    _, processor = tiny
    first = Pair("s00001", _png(0), "undifferentiated neuroblastoma.", "UD")
    second = Pair("s00001", _png(1), "maturing ganglion cells in schwannian stroma.", "D")
    encode = PairEncoder(processor, "Describe.", 256, n_pairs=2)
    for pair in (first, second, first, second):  # cached or not, each pair's own encoding
        (got,) = encode([pair])
        want = V.encode_pair(processor, pair.image, "Describe.", pair.text, 256)
        assert got.labels == want.labels and got.input_ids == want.input_ids
        assert got.pixel_values.equal(want.pixel_values)
