"""A test-size, randomly initialised Qwen2.5-VL with a tokenizer built locally (no model hub needed).

The real stage-1 model is `Qwen/Qwen2.5-VL-7B-Instruct`; this module builds something with the same classes,
the same special tokens and the same chat template, small enough to fine-tune on two CPU cores:

- tokenizer: a byte-level BPE trained with the `tokenizers` library on a fixed pathology corpus (so any text
  tokenizes, and the synthetic descriptions' words are mostly single tokens) plus Qwen's special tokens,
  wrapped into `Qwen2Tokenizer` with Qwen2.5-VL's chat template;
- processor: `Qwen2_5_VLProcessor` = `Qwen2VLImageProcessor` (14 px patches, 2x2 merge) + that tokenizer;
- model: `Qwen2_5_VLForConditionalGeneration` from a config (hidden 64, 2 layers, vision depth 2).

Everything is a pure function of the seed (and of `vision`: the random tower, or one distilled from
EfficientNet-Lite0, `tiny_vision.py`) and is cached in a folder (`save_pretrained` layout, safetensors), so every
rank, the describe step and a later export all load the *same* base weights.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional

log = logging.getLogger(__name__)

VISIONS = ("random", "distilled")
"""The tiny model's vision towers (`vlm.tiny_vision`)."""
FOLDER_PREFIX = "tiny-qwen2.5-vl-seed"
"""How every tiny model folder's name starts (then the seed, the tower unless random, the builder's fingerprint)."""

# Qwen2.5-VL's own template (Qwen/Qwen2.5-VL-7B-Instruct chat_template.json): the tiny model uses the exact
# string, so prompts are token-for-token shaped like the real model's.
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# In Qwen's vocabulary order; ids follow the trained BPE vocabulary.
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# A fixed corpus so the tokenizer never depends on which data set is around. It covers the chat template's
# words, the prompt, and histology vocabulary (the synthetic descriptions' words included).
_CORPUS = [
    "system", "user", "assistant", "You are a helpful assistant.",
    "You are a specialized pathologist, please describe what you see microscopically on the "
    "neuroblastoma pathology image.",
    "undifferentiated poorly differentiated differentiated neuroblastoma neuroblasts neuroblastic",
    "small round blue cells sheets of densely packed cells with scant cytoplasm and hyperchromatic nuclei",
    "no neuropil visible, high nuclear to cytoplasmic ratio, mitotic figures and karyorrhexis are frequent",
    "neuropil background with rosettes, fewer than five percent of cells show ganglionic differentiation",
    "homer wright rosettes, fibrillary neuropil, salt and pepper chromatin, prominent nucleoli",
    "ganglion cells with abundant eosinophilic cytoplasm, large vesicular nuclei, schwannian stroma",
    "maturing ganglion cells, more than five percent differentiating neuroblasts, abundant neuropil",
    "the tissue shows stroma, necrosis, calcification, hemorrhage, fibrovascular septa and lymphocytes",
    "cells nuclei cytoplasm chromatin pattern texture staining pink purple eosin hematoxylin",
    "the image shows a patch of tumour tissue at high magnification with mild moderate marked atypia",
    "dense sparse scattered clustered nests lobules sheets cords trabeculae",
    "The, This, These, A, An, In, With, and, or, of, in, on, at, is, are, shows, show, there, few, many, some",
    "0 1 2 3 4 5 6 7 8 9 . , ; : - ( ) % ' \"",
    # Vocabulary of pathology-style descriptions (the embedded synthetic set's words among them), in both cases.
    "absent abundant adequate almost ample appearance areas background barely blue by cellular central closely "
    "clusters coarse composed conspicuous containing crowd crowding cytoplasmic dark densely differentiating "
    "differentiation diffuse dispersed dominated each early eccentric enlarged eosinophilic evaluation feature "
    "features fewer fibrillary field fine finely five fragment further ganglion-like ganglionic grows have "
    "highly histological homer hyperchromatic identified intervening large larger lie little magnification "
    "matrix medium minimal more moulding nests nuclear-to-cytoplasmic nucleolus occasional packed percent "
    "present primitive quality ratio recommended rich salt-and-pepper scant scattered section seen separated "
    "set single spindle-shaped stained synchronous than that those towards tumour visible within wright-like",
    "Absent Abundant Cells Cellular Clusters Diffuse Differentiating Fewer Highly Large More Nests Neuroblastic "
    "Neuropil No Nuclear Nuclei Occasional Scattered Schwannian Sheets The Microscopically On H&E",
]


def _corpus(extra: Optional[Iterable[str]] = None) -> List[str]:
    lines = list(_CORPUS)
    if extra:
        lines.extend(extra)
    # Repeat so that whole words win the BPE merges.
    return lines * 20


def build_tiny_tokenizer(vocab_size: int = 1024, extra_corpus: Optional[Iterable[str]] = None):
    """A `Qwen2Tokenizer` around a byte-level BPE trained offline; deterministic for the same corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_corpus(extra_corpus), trainer=trainer)
    tok = Qwen2Tokenizer(
        tokenizer_object=bpe, unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        chat_template=QWEN25_VL_CHAT_TEMPLATE, model_max_length=32768,
    )
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    return tok


def tiny_config(tokenizer, hidden: int = 64, layers: int = 2, vision_depth: int = 2, vision_hidden: int = 64):
    """A `Qwen2_5_VLConfig` of test size whose special-token ids point into `tokenizer`."""
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    vocab = len(tokenizer)
    text = dict(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        # mrope splits head_dim/2 = 8 rotary frequencies into (temporal, height, width) sections.
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
        tie_word_embeddings=False,
    )
    vision = dict(
        depth=vision_depth, hidden_size=vision_hidden, intermediate_size=vision_hidden * 2, num_heads=4,
        out_hidden_size=hidden, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
        fullatt_block_indexes=[vision_depth - 1],
    )
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=False,
    )


def build_tiny_processor(tokenizer, min_pixels: int, max_pixels: int):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN25_VL_CHAT_TEMPLATE,
    )


def _fingerprint(vision: str) -> str:
    """Changes whenever the corpus or a builder changes (this module; the distillation's for a distilled tower), so
    a stale cache is never reused."""
    import hashlib

    digest = hashlib.sha256(Path(__file__).read_bytes())
    if vision == "distilled":
        digest.update((Path(__file__).parent / "tiny_vision.py").read_bytes())
    return digest.hexdigest()[:10]


def default_cache_dir() -> Path:
    return Path(os.environ.get("MMLNB_CACHE", Path(tempfile.gettempdir()) / "mmlnb-cache"))


def ensure_tiny_model(seed: int = 0, cache_dir: Optional[Path] = None, vision: str = "random") -> Path:
    """Build (once) and return the folder of the tiny model + processor for `seed` and `vision` (`VISIONS`).

    Concurrent ranks serialise on a file lock; the model is written to a temporary folder and renamed, so a
    folder with `done.json` is always complete; a failed or interrupted build removes its temporary folder, and the
    next build removes those a killed one left.
    """
    import fcntl

    if vision not in VISIONS:
        raise ValueError(f"tiny model vision tower {vision!r} is not one of {', '.join(VISIONS)}")
    root = Path(cache_dir or default_cache_dir())
    kind = "" if vision == "random" else f"-{vision}"
    out = root / f"{FOLDER_PREFIX}{seed}{kind}-{_fingerprint(vision)}"
    if (out / "done.json").is_file():
        return out
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "done.json").is_file():
            # a build killed mid-write (SIGKILL, no cleanup ran) left its temporary folder, a model's size, which no
            # later build reused: with the lock held no other build of `out` is writing one, so they go
            for left in root.glob(f"{out.name}.*"):
                if left.is_dir():
                    shutil.rmtree(left, ignore_errors=True)
            _build(out, seed, vision)
    return out


def _build(out: Path, seed: int, vision: str) -> None:
    """Build into a temporary folder beside `out`, removed when the build fails or is interrupted (Ctrl-C)."""
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        _build_into(tmp, out, seed, vision)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build_into(tmp: Path, out: Path, seed: int, vision: str) -> None:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    tok = build_tiny_tokenizer()
    # Processor pixel bounds are per-run settings (load_vlm overrides them); these are only defaults.
    processor = build_tiny_processor(tok, min_pixels=56 * 56, max_pixels=112 * 112)
    config = tiny_config(tok)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    torch.random.set_rng_state(state)
    built = {"seed": seed, "kind": "tiny-qwen2.5-vl", "vision": vision}
    if vision == "distilled":
        from .tiny_vision import distill_vision_tower

        log.info("building the tiny VLM (seed %d) with its vision tower distilled from EfficientNet-Lite0: about "
                 "16 s on 2 cores, once per cache (%s)", seed, out.parent)
        built["distillation"] = distill_vision_tower(model, processor)
        log.info("tiny VLM vision tower distilled in %.0f s (feature loss %.3f -> %.3f)",
                 built["distillation"]["seconds"], built["distillation"]["loss_first"],
                 built["distillation"]["loss_last"])
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    # Written by hand rather than with model.save_pretrained: under an initialised process group transformers
    # writes weights only on rank 0, and the rank holding the lock here may be any rank.
    from safetensors.torch import save_file

    config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"),
              metadata={"format": "pt"})
    processor.save_pretrained(tmp)
    (tmp / "done.json").write_text(json.dumps(built, indent=1))
    if out.exists():  # a stale, incomplete folder from a killed build
        shutil.rmtree(out)
    tmp.rename(out)
