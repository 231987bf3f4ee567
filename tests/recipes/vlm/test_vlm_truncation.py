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
