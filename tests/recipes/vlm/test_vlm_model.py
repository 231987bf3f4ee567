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
def tiny(tmp_path_factory):
    from mmlnb_dist.recipes.vlm import model as V

    return V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=tmp_path_factory.mktemp("cache"))


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


def test_generation_stops_at_end_of_turn_and_is_batched(tiny):
    from mmlnb_dist.recipes.vlm.config import GenerationConfig
    from mmlnb_dist.recipes.vlm import model as V

    model, proc = tiny
    gen = GenerationConfig(max_new_tokens=6)
    batched = V.generate_descriptions(model, proc, [_image(0), _image(1)], PROMPT, gen)
    single = [V.generate_descriptions(model, proc, [_image(i)], PROMPT, gen)[0] for i in (0, 1)]
    assert batched == single
    kw = V.generation_kwargs(GenerationConfig(preset="authors"), proc)
    assert kw["do_sample"] and kw["temperature"] == 0.3 and kw["top_p"] == 0.9 and kw["top_k"] == 50
    assert kw["repetition_penalty"] == 1.2 and kw["eos_token_id"] == proc.tokenizer.convert_tokens_to_ids("<|im_end|>")


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
