"""What fine-tuning cannot train as written: descriptions cut at `vlm.max_length`, samples without a description.

A pair longer than `vlm.max_length` (prompt + image tokens + answer + `<|im_end|>`) is cut, keeping `<|im_end|>`
(`model.encode_pair`): the model learns a shortened description. Samples without a description are not pairs and
are left out (`batches.read_pairs`). Both used to pass without a word; here they are counted at setup, said with
the first keys; the cut ones are also recorded with the run's first metrics (`data/<split>_pairs_cut`).

The count is exact without encoding every image: a pair's prompt length depends only on its image's size (the
processor resizes by size alone), so the prompt is encoded once per distinct size, on a blank image of that size.
`finetune-vlm`'s check runs that per-size count on the shard set's image sizes (`pair_sizes`, headers only), so a
pair whose prompt and image alone fill `vlm.max_length` is refused before the run folder is taken.
"""
from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence, Tuple

from PIL import Image

from ...core.errors import ConfigError
from ...data.images import image_member
from ...data.reader import iter_shard_samples
from ...data.shardset import ShardError, ShardSet
from . import model as V
from .batches import Pair

if TYPE_CHECKING:
    from .config import VLMConfig

log = logging.getLogger(__name__)

SHOWN_KEYS = 5
"""How many keys a warning names (the count says how many there are)."""


def image_size(data: bytes, key: str) -> Tuple[int, int]:
    """(width, height) of an encoded image from its header alone (no decoding); ShardError naming the sample
    when the bytes are no image PIL can open."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except OSError as err:  # (PIL's UnidentifiedImageError included)
        raise ShardError(f"vlm.pairs: sample {key}'s image cannot be read ({err}); rebuild the shard set or drop "
                         f"the sample") from None


def pair_sizes(shards: ShardSet, split: str, limit: Optional[int] = None) -> List[Tuple[str, Tuple[int, int]]]:
    """(key, image size) of the first `limit` (None: all) pairs `batches.read_pairs` would return for `split`, in
    the same order, keeping no image bytes (`count_pairs`' count, for `finetune-vlm`'s check)."""
    if split not in shards.manifest["splits"]:
        return []
    sizes: List[Tuple[str, Tuple[int, int]]] = []
    for path, _ in shards.shards(split):
        for s in iter_shard_samples(path):
            if limit is not None and len(sizes) >= limit:
                return sizes
            ext = image_member(s)
            if s.get("txt", b"").decode("utf-8").strip() and ext is not None:
                sizes.append((s["__key__"], image_size(s[ext], s["__key__"])))
    return sizes


def prompt_tokens_by_size(processor, prompt: str, max_length: int,
                          sized: Iterable[Tuple[str, Tuple[int, int]]]) -> Dict[Tuple[int, int], int]:
    """Tokens of the prompt with an image of each distinct size of `sized` ((key, size) pairs). ConfigError when a
    prompt and image alone take `max_length` (that pair's description could not be learned at all)."""
    prompt_tokens: Dict[Tuple[int, int], int] = {}
    for key, size in sized:
        if size in prompt_tokens:
            continue
        blank = Image.new("RGB", size, (255, 255, 255))
        try:
            prompt_tokens[size] = len(V.encode_prompt(processor, blank, prompt).input_ids)
        except ValueError as err:  # (the prompt alone passed with a square image: it is the size, e.g. 1x300)
            raise ConfigError(f"vlm.pairs: the {size[0]}x{size[1]} image of sample {key} cannot be given to the "
                              f"model ({err}); crop it or leave it out of the shard set") from None
        if prompt_tokens[size] >= max_length:  # no room for any answer: `encode_pair` would fail mid-training
            raise ConfigError(
                f"vlm.max_length={max_length}: the prompt and the {size[0]}x{size[1]} image of sample {key} "
                f"take {prompt_tokens[size]} tokens, leaving no room for its description (the processor scales "
                f"an image to between vlm.min_pixels and vlm.max_pixels, rounding each side up to whole patches, "
                f"so a narrow or small image can take more tokens than a square one at vlm.max_pixels); raise "
                f"vlm.max_length above {prompt_tokens[size]}, or lower vlm.min_pixels")
    return prompt_tokens


def cut_keys(processor, pairs: Sequence[Pair], prompt: str, max_length: int) -> List[str]:
    """Keys of the pairs whose answer does not fit `max_length` beside its prompt and image. ConfigError when a
    pair's prompt and image alone take `max_length` (`prompt_tokens_by_size`)."""
    sizes = [(pair.key, image_size(pair.image, pair.key)) for pair in pairs]
    prompt_tokens = prompt_tokens_by_size(processor, prompt, max_length, sizes)
    cut = []
    for pair, (_, size) in zip(pairs, sizes):
        answer = processor.tokenizer(pair.text.strip() + V.END_OF_TURN, add_special_tokens=False)["input_ids"]
        if len(answer) > max_length - prompt_tokens[size]:
            cut.append(pair.key)
    return cut


def pair_counts(processor, vcfg: "VLMConfig", pairs: Dict[str, Sequence[Pair]]) -> Dict[str, float]:
    """Per split (`pairs`: the pairs trained or validated on), warn about the pairs `vcfg.max_length` cuts; return
    the counts as metrics (samples without a description are said by `read_pairs`)."""
    counts: Dict[str, float] = {"data/train_pairs": float(len(pairs.get("train", ())))}
    for split, used in pairs.items():
        cut = cut_keys(processor, used, vcfg.prompt, vcfg.max_length)
        counts[f"data/{split}_pairs_cut"] = float(len(cut))
        if cut:
            log.warning("%d of %d %s pairs are longer than vlm.max_length=%d and are cut (their end is not "
                        "learned; <|im_end|> is kept): %s%s. Raise vlm.max_length, or shorten these descriptions",
                        len(cut), len(used), split, vcfg.max_length, ", ".join(cut[:SHOWN_KEYS]),
                        ", ..." if len(cut) > SHOWN_KEYS else "")
    return counts
