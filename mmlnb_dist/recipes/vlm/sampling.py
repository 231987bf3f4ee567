"""Sampled description generation whose draw for an image depends on that image alone, never on its batch.

HF's `do_sample=True` draws every row of a batch from one random stream: the text of an image then depends on
which images share its batch, i.e. on the number of ranks, `vlm.generation.batch_size` and how a resumed describe
re-batches. Here `generate` runs greedy (argmax) over scores that reproduce HF's sampling pipeline in its order
(repetition penalty, temperature, top-k, top-p) plus Gumbel noise: argmax(z + G), G ~ Gumbel(0, 1) i.i.d., is an
exact draw from softmax(z) (the Gumbel-max trick). The noise of each row comes from a generator seeded by (that
row's image seed, the number of tokens generated so far), so it is the same in any batch; filtered-out tokens
are -inf and stay out. No global random state is read or moved.
"""
from __future__ import annotations

import hashlib
import zlib
from typing import Any, Dict, List, Optional, Sequence

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# HF `generate` keys that switch on its own (shared-stream) sampling or its own copies of our processors.
_SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p", "repetition_penalty")


def pixel_seed(pixel_values: torch.Tensor) -> int:
    """crc32 of processed pixels (format- and source-independent: bytes, files and PIL images of the same picture
    give the same seed)."""
    return zlib.crc32(pixel_values.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


def image_seeds(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> List[int]:
    """One seed per image of a batch, from that image's own rows of the concatenated `pixel_values` (a Qwen2.5-VL
    image contributes t*h*w patch rows, its `image_grid_thw`)."""
    rows = [int(n) for n in image_grid_thw.prod(dim=1).tolist()]
    if sum(rows) != pixel_values.shape[0]:
        raise ValueError(f"image_grid_thw accounts for {sum(rows)} patch rows, pixel_values has "
                         f"{pixel_values.shape[0]}: not one Qwen2.5-VL image batch")
    return [pixel_seed(part) for part in torch.split(pixel_values, rows, dim=0)]


def step_seed(image_seed: int, step: int) -> int:
    """A 63-bit generator seed for (image, token position); hashed so nearby seeds and steps give unrelated
    streams."""
    digest = hashlib.blake2b(f"{image_seed}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class GumbelNoise(LogitsProcessor):
    """Adds Gumbel(0, 1) noise to every row's scores, drawn from a generator seeded by (the row's image seed, the
    number of tokens generated so far). Greedy decoding of the result samples from softmax(scores).

    "Generated so far" is the current length minus the batch's prompt length: the absolute length depends on the
    batch (left padding to its longest prompt), the count of new tokens does not."""

    def __init__(self, row_seeds: Sequence[int], prompt_length: int):
        self.row_seeds = [int(s) for s in row_seeds]
        self.prompt_length = int(prompt_length)
        self._generators: Dict[torch.device, List[torch.Generator]] = {}

    def _generators_on(self, device: torch.device) -> List[torch.Generator]:
        # One generator per row, re-seeded at every step (creating one per row and step costs more).
        if device not in self._generators:
            self._generators[device] = [torch.Generator(device=device) for _ in self.row_seeds]
        return self._generators[device]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.row_seeds):
            raise ValueError(f"{scores.shape[0]} rows of scores for {len(self.row_seeds)} image seeds (beam search "
                             f"and num_return_sequences > 1 are not supported with seeded sampling)")
        step = input_ids.shape[1] - self.prompt_length
        noise = torch.empty(scores.shape, dtype=torch.float32, device=scores.device)
        for row, (seed, gen) in enumerate(zip(self.row_seeds, self._generators_on(scores.device))):
            gen.manual_seed(step_seed(seed, step))
            noise[row].uniform_(generator=gen)
        # G = -log(-log(U)); U == 0 (possible in [0, 1)) would give -inf, so clamp to the smallest normal float.
        noise.clamp_(min=torch.finfo(torch.float32).tiny)
        gumbel = -torch.log(-torch.log(noise))
        return (scores.float() + gumbel).to(scores.dtype)


class UnpaddedRepetitionPenalty(LogitsProcessor):
    """HF's repetition penalty over each row's own tokens: the left padding of a batch (pad ids a row has only
    because a longer prompt shares its batch) is not counted as seen. Padded positions are replaced by the row's
    first real token, which the row has anyway (a token is penalised once however often it occurs)."""

    def __init__(self, penalty: float, pad_counts: Sequence[int]):
        self.penalty = RepetitionPenaltyLogitsProcessor(penalty=penalty)
        self.pad_counts = [int(n) for n in pad_counts]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if any(self.pad_counts):
            input_ids = input_ids.clone()
            for row, n in enumerate(self.pad_counts):
                if n:
                    input_ids[row, :n] = input_ids[row, n]
        return self.penalty(input_ids, scores)


def seeded_sampling(kwargs: Dict[str, Any], image_seeds: Optional[Sequence[int]],
                    attention_mask: torch.Tensor) -> Dict[str, Any]:
    """`generate` kwargs of a sampling preset (HF form: do_sample, temperature, top_k, top_p, repetition_penalty)
    -> the same distribution drawn per image: greedy decoding over a `logits_processor` list in HF's sampling
    order (repetition penalty, temperature, top-k, top-p) ending in `GumbelNoise`. `image_seeds` None: greedy
    decoding with the repetition penalty alone (no noise), which then also ignores each row's padding.

    `attention_mask`: the left-padded prompt batch's mask (its width is the prompt length; a row's leading zeros
    are its padding). HF's own copies of these settings are switched off, so nothing is applied twice."""
    out = {k: v for k, v in kwargs.items() if k not in _SAMPLING_KEYS}
    processors = LogitsProcessorList()
    penalty: Optional[float] = kwargs.get("repetition_penalty")
    if penalty is not None and penalty != 1.0:
        pad_counts = (attention_mask.cumsum(dim=1) == 0).sum(dim=1).tolist()
        processors.append(UnpaddedRepetitionPenalty(penalty, pad_counts))
    temperature = kwargs.get("temperature")
    if temperature is not None and temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    top_k = kwargs.get("top_k")
    if top_k:
        processors.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    top_p = kwargs.get("top_p")
    if top_p is not None and top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    if image_seeds is not None:
        processors.append(GumbelNoise(image_seeds, prompt_length=attention_mask.shape[1]))
    out.update(do_sample=False, temperature=None, top_k=None, top_p=None, repetition_penalty=None,
               logits_processor=processors)
    return out
