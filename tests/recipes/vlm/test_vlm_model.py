"""Stage 1 model pieces: label masking, one template for training and generation, LoRA targeting, shipped
DeepSpeed configs and the memory estimator. In-process, seconds. (The description-quality metrics, ROUGE-L and
BLEU from torchmetrics, are tested in test_quality.py.)"""
from __future__ import annotations

import json

import pytest

from support.vlm import ROOT

PIX = 56 * 56
PROMPT = "You are a specialized pathologist, please describe what you see microscopically."


@pytest.fixture(scope="module")
def tiny_varsize(cache):
    """Pixel bounds 28x28 .. 112x112: images of different sizes get different numbers of image tokens."""
    from mmlnb_dist.recipes.vlm import model as V

    return V.load_vlm("tiny", min_pixels=28 * 28, max_pixels=112 * 112, cache_dir=cache)


def _image(seed: int = 0, size: int = 64):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def test_labels_mask_exactly_the_prompt(tiny):
    from mmlnb_dist.recipes.vlm import model as V

    _, proc = tiny
    tok = proc.tokenizer
    answer = "Sheets of small round blue cells."
    enc = V.encode_pair(proc, _image(), PROMPT, answer, max_length=256)
    prompt = V.encode_prompt(proc, _image(), PROMPT)
    n = len(prompt.input_ids)
    assert enc.input_ids[:n] == prompt.input_ids
    assert enc.labels[:n] == [V.IGNORE_INDEX] * n
    supervised = enc.labels[n:]
    assert V.IGNORE_INDEX not in supervised and supervised == enc.input_ids[n:]
    assert supervised[-1] == tok.convert_tokens_to_ids("<|im_end|>")  # ends with end-of-turn, not pad
    assert tok.decode(supervised, skip_special_tokens=True) == answer
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    assert enc.input_ids.count(image_id) == 4  # 56 x 56 px -> 4 x 4 patches -> 2 x 2 merged tokens
    assert all(lab == V.IGNORE_INDEX for i, lab in zip(enc.input_ids, enc.labels) if i == image_id)


def test_train_and_generate_share_the_prompt_ids(tiny):
    from mmlnb_dist.recipes.vlm import model as V

    _, proc = tiny
    img = _image(1)
    train = V.encode_pair(proc, img, PROMPT, "any answer", 256)
    gen = V.encode_prompt(proc, img, PROMPT)
    assert train.input_ids[:len(gen.input_ids)] == gen.input_ids
    text = V.prompt_text(proc, PROMPT)
    assert PROMPT in text and text.endswith("<|im_start|>assistant\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text
    # Left padding for generation keeps every prompt flush against the generated tokens.
    short = V.encode_prompt(proc, img, "short")
    batch = V.collate([gen, short], proc.tokenizer.pad_token_id, padding_side="left")
    assert batch["input_ids"][1, -len(short.input_ids):].tolist() == short.input_ids
    assert batch["attention_mask"][1].tolist()[:len(gen.input_ids) - len(short.input_ids)] == \
        [0] * (len(gen.input_ids) - len(short.input_ids))


def _generated_ids(model, proc, images, gen):
    """Greedy new-token ids per image, from one left-padded batch (reference for the text checks)."""
    from mmlnb_dist.recipes.vlm import model as V

    batch = V.generation_batch(proc, images, PROMPT)
    out = model.generate(**batch, **V.generation_kwargs(gen, proc))
    return [row.tolist() for row in out[:, batch["input_ids"].shape[1]:]]


def test_batched_generation_of_unequal_prompts_equals_one_at_a_time(tiny_varsize):
    """Images of different sizes have different numbers of image tokens: the batch is really left-padded, and
    every row generates what it generates alone."""
    from mmlnb_dist.recipes.vlm.config import GenerationConfig
    from mmlnb_dist.recipes.vlm import model as V

    model, proc = tiny_varsize
    images = [_image(0, 56), _image(1, 112), _image(2, 84)]
    image_id = proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    counts = [V.encode_prompt(proc, im, PROMPT).input_ids.count(image_id) for im in images]
    assert len(set(counts)) == 3, counts  # 4, 16 and 9 image tokens
    batch = V.generation_batch(proc, images, PROMPT)
    pads = (batch["attention_mask"] == 0).sum(dim=1).tolist()
    assert sorted(pads)[0] == 0 and all(p > 0 for p in sorted(pads)[1:]), pads
    assert all(batch["attention_mask"][i, :p].sum() == 0 for i, p in enumerate(pads))  # padding on the left
    gen = GenerationConfig(max_new_tokens=8)
    batched = V.generate_descriptions(model, proc, images, PROMPT, gen)
    single = [V.generate_descriptions(model, proc, [im], PROMPT, gen)[0] for im in images]
    assert batched == single
    assert len(set(single)) == 3, single  # the images lead to different outputs: a mix-up would show


def test_generation_stops_at_end_of_turn_and_excludes_it(tiny_varsize):
    """A model that emits `<|im_end|>` exactly where it would have emitted token X (their output rows swapped):
    each description is the original one cut before its first X, in a batch where rows stop at different steps."""
    import copy

    import torch

    from mmlnb_dist.recipes.vlm.config import GenerationConfig
    from mmlnb_dist.recipes.vlm import model as V

    model, proc = tiny_varsize
    tok = proc.tokenizer
    end = tok.convert_tokens_to_ids(V.END_OF_TURN)
    images = [_image(0, 56), _image(1, 112), _image(2, 84)]
    gen = GenerationConfig(max_new_tokens=10)
    plain = _generated_ids(model, proc, images, gen)
    assert all(end not in row for row in plain)  # the random model never ends a turn by itself
    # X: a token that one row reaches late enough to keep some text and another row never produces.
    stop_token, stop_at = next((row[i], i) for row in plain for i in range(2, len(row))
                               if row[i] not in row[:i] and any(row[i] not in other for other in plain))
    ending = copy.deepcopy(model)
    head = ending.get_output_embeddings().weight
    with torch.no_grad():
        head[[end, stop_token]] = head[[stop_token, end]]
    expected = [tok.decode(row[:row.index(stop_token)] if stop_token in row else row,
                           skip_special_tokens=True).strip() for row in plain]
    lengths = [row.index(stop_token) if stop_token in row else len(row) for row in plain]
    assert min(lengths) == stop_at and max(lengths) == gen.max_new_tokens  # rows stop at different steps
    assert V.generate_descriptions(ending, proc, images, PROMPT, gen) == expected
    assert [V.generate_descriptions(ending, proc, [im], PROMPT, gen)[0] for im in images] == expected
    kw = V.generation_kwargs(GenerationConfig(preset="authors"), proc)
    assert kw["do_sample"] and kw["temperature"] == 0.3 and kw["top_p"] == 0.9 and kw["top_k"] == 50
    assert kw["repetition_penalty"] == 1.2 and kw["eos_token_id"] == end


def test_training_loss_is_cross_entropy_over_answer_tokens_only(tiny_varsize):
    """Right padding: labels are -100 on prompt, image and padding; the model's loss equals a cross-entropy
    computed by hand over the answer positions (each predicted from the position before it)."""
    import torch
    import torch.nn.functional as F

    from mmlnb_dist.recipes.vlm import model as V

    model, proc = tiny_varsize
    pairs = [(_image(0, 56), "Sheets of small round blue cells."), (_image(1, 112), "Neuropil.")]
    enc = [V.encode_pair(proc, im, PROMPT, text, 256) for im, text in pairs]
    n_prompt = [len(V.encode_prompt(proc, im, PROMPT).input_ids) for im, _ in pairs]
    batch = V.collate(enc, proc.tokenizer.pad_token_id, "right")
    width = batch["input_ids"].shape[1]
    lengths = [len(e.input_ids) for e in enc]
    assert min(lengths) < width  # the batch really is padded
    for i, (n, length) in enumerate(zip(n_prompt, lengths)):
        assert (batch["labels"][i, :n] == V.IGNORE_INDEX).all()
        assert (batch["labels"][i, length:] == V.IGNORE_INDEX).all()
        assert (batch["attention_mask"][i, length:] == 0).all()
        assert batch["labels"][i, n:length].tolist() == enc[i].input_ids[n:]
    with torch.no_grad():
        out = model(**batch)
    logits, targets = [], []
    for i, (n, length) in enumerate(zip(n_prompt, lengths)):
        logits.append(out.logits[i, n - 1:length - 1])
        targets.append(torch.tensor(enc[i].input_ids[n:length]))
    by_hand = F.cross_entropy(torch.cat(logits).float(), torch.cat(targets))
    assert torch.allclose(out.loss, by_hand, rtol=1e-5, atol=1e-6), (out.loss, by_hand)


def test_finetune_and_describe_read_the_one_prompt_field(tiny, cache):
    """`vlm.prompt` is the prompt of both: the training ids start with its prompt ids, and describe generates
    from exactly its prompt ids; changing the field changes both."""
    import io

    import torch

    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.batches import Pair, pair_encoder
    from mmlnb_dist.recipes.vlm.config import VLMConfig
    from mmlnb_dist.recipes.vlm.describe import Describer

    _, proc = tiny
    image = _image(3)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    pair = Pair("k0", buf.getvalue(), "Neuropil.", "PD")
    seen = {}
    for prompt in ("Describe the patch.", "What grade is this neuroblastoma?"):
        vcfg = VLMConfig(model="tiny", prompt=prompt, min_pixels=PIX, max_pixels=PIX, cache_dir=cache)
        want = V.encode_prompt(proc, image, prompt).input_ids
        trained = pair_encoder(proc, vcfg)([pair])[0].input_ids
        describer = Describer(vcfg, "tiny", None, torch.device("cpu"), "fp32")
        captured = {}

        def fake_generate(**kw):
            captured.update(kw)
            return kw["input_ids"]  # no new tokens

        describer.model.generate = fake_generate
        assert describer.describe([image]) == [""]
        assert trained[:len(want)] == want
        assert captured["input_ids"][0].tolist() == want
        seen[prompt] = want
    assert len({tuple(v) for v in seen.values()}) == 2


def test_lora_targets_exclude_vision_tower_unless_asked(tiny):
    from mmlnb_dist.recipes.vlm.config import LoraConfig
    from mmlnb_dist.recipes.vlm import model as V

    model, _ = tiny
    default = V.lora_target_modules(model, LoraConfig(r=4))
    assert default and not any("visual" in n for n in default)
    assert {n.rsplit(".", 1)[-1] for n in default} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                     "up_proj", "down_proj"}
    with_vision = V.lora_target_modules(model, LoraConfig(r=4, vision_lora=True))
    vision = [n for n in with_vision if "visual" in n]
    assert vision and all(".blocks." in n for n in vision)  # the merger is trained via modules_to_save
    assert set(default) < set(with_vision)
    only_q = V.lora_target_modules(model, LoraConfig(r=4, target_modules=["q_proj"]))
    assert all(n.endswith("q_proj") for n in only_q)


def test_apply_lora_trains_only_adapters_and_merger(tmp_path):
    from mmlnb_dist.recipes.vlm.config import LoraConfig
    from mmlnb_dist.recipes.vlm import model as V

    model, _ = V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=tmp_path)
    peft = V.apply_lora(model, LoraConfig(r=4, train_merger=True))
    trainable = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "visual.merger.modules_to_save" in n for n in trainable)
    assert any("visual.merger" in n for n in trainable)
    assert not any("visual.blocks" in n for n in trainable)


def test_merger_lr_puts_exactly_the_merger_in_its_own_group(tmp_path):
    from mmlnb_dist.recipes.vlm.config import LoraConfig
    from mmlnb_dist.recipes.vlm import model as V

    model, _ = V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=tmp_path)
    peft = V.apply_lora(model, LoraConfig(r=4, train_merger=True))
    trainable = {n: p for n, p in peft.named_parameters() if p.requires_grad}
    single = V.param_groups(peft, 1e-3, None)
    assert len(single) == 1 and len(single[0]["params"]) == len(trainable)
    adapter, merger = V.param_groups(peft, 1e-3, 1e-2)
    assert (adapter["name"], adapter["lr"], merger["name"], merger["lr"]) == ("adapter", 1e-3, "merger", 1e-2)
    merger_names = {n for n, p in trainable.items() if any(p is q for q in merger["params"])}
    assert merger_names == {n for n in trainable if "visual.merger.modules_to_save" in n}
    assert len(adapter["params"]) + len(merger["params"]) == len(trainable)
    # the vision tower's adapters at their own rate (ms-swift's vit_lr), the merger still apart
    with_vision = V.apply_lora(V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=tmp_path)[0],
                               LoraConfig(r=4, train_merger=True, vision_lora=True))
    groups = {g["name"]: g for g in V.param_groups(with_vision, 1e-3, 1e-2, 1e-4)}
    named = {id(p): n for n, p in with_vision.named_parameters()}
    assert {k: g["lr"] for k, g in groups.items()} == {"adapter": 1e-3, "merger": 1e-2, "vision": 1e-4}
    assert groups["vision"]["params"] and all(".visual.blocks." in named[id(p)] and "lora_" in named[id(p)]
                                              for p in groups["vision"]["params"])
    assert not any(".visual." in named[id(p)] for p in groups["adapter"]["params"])
    # without a trained merger there is nothing to give its own rate
    frozen_merger = V.apply_lora(V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=tmp_path)[0],
                                 LoraConfig(r=4, train_merger=False))
    assert len(V.param_groups(frozen_merger, 1e-3, 1e-2)) == 1


def test_tiny_model_is_deterministic_and_cached(tmp_path):
    from mmlnb_dist.recipes.vlm.tiny_qwen import ensure_tiny_model

    a = ensure_tiny_model(seed=3, cache_dir=tmp_path / "a")
    b = ensure_tiny_model(seed=3, cache_dir=tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert ensure_tiny_model(seed=3, cache_dir=tmp_path / "a") == a


def test_shipped_deepspeed_configs_match_the_config():
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.vlm.finetune import shipped_deepspeed_configs

    cfg = load_config(ROOT / "launch/profiles/rtx4090.yaml")
    for name, expected in shipped_deepspeed_configs(cfg).items():
        shipped = json.loads((ROOT / "launch/deepspeed" / name).read_text())
        assert shipped == json.loads(json.dumps(expected)), name
    z3o = json.loads((ROOT / "launch/deepspeed/vlm_zero3_offload.json").read_text())
    assert z3o["zero_optimization"]["offload_param"]["device"] == "cpu" and z3o["bf16"]["enabled"]


def test_memory_estimator_matches_the_7b_model():
    from mmlnb_dist.recipes.vlm.memory import (
        RTX4090_GIB, QwenVLDims, count_params, estimate_memory, image_tokens, lora_params, smart_resize,
    )
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

    d = QwenVLDims()
    assert count_params(d)["total"] == pytest.approx(8.29e9, rel=0.005)  # Qwen2.5-VL-7B: 8.29B parameters
    # r=64 on q/k/v/o/gate/up/down of 28 layers: 28 x 64 x 90112
    assert lora_params(d, 64) == 28 * 64 * ((3584 + 3584) * 2 + (3584 + 512) * 2 + (3584 + 18944) * 3)
    for hw, lo, hi in [((256, 256), 65536, 65536), ((300, 200), 3136, 12544), ((1000, 700), 3136, 200704)]:
        assert smart_resize(*hw, lo, hi) == tuple(hf_smart_resize(*hw, 28, lo, hi))
    assert image_tokens(d, 256, 256, 65536, 65536) == 100  # 256 px -> 280 px -> 20 x 20 patches -> 10 x 10
    authors = estimate_memory(micro_batch=4)
    one = estimate_memory(micro_batch=1)
    qlora = estimate_memory(micro_batch=4, weight_bits=4)
    assert not authors.fits(RTX4090_GIB) and one.fits(RTX4090_GIB)
    assert 19 < one.total_gib < 22.5  # ms-swift measured 21.6-22 GiB at batch 1
    assert 6 < qlora.total_gib < 12
