"""(b) Qwen2.5-VL LoRA fine-tuning peak memory and tokens/s; (c) describe throughput.

Full size: Qwen2.5-VL-7B built from its config values (those of `recipes.vlm.memory.QwenVLDims`, which are the
checkpoint's config.json) with random bf16 weights on the device; the tiny tokenizer/processor of
`recipes.vlm.tiny_qwen` supplies the special-token ids and the image preprocessing (no hub access; speed and
memory do not depend on which tokens the ids are). Then the vlm recipe's steps: `use_cache` off, non-reentrant
gradient checkpointing, `recipes.vlm.model.apply_lora` with the profile's LoRA, `core.engine.build_engine`
(DeepSpeed bf16, ZeRO 0, or ZeRO 2 with the optimizer offloaded), `model.collate`d batches, and for describe
`model.generation_batch` + `generation_kwargs` as `describe` uses them. `--tiny`: the recipe's own tiny model
(`load_vlm("tiny")`) on the CPU.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch

from .common import Suite, timed_steps

MEMORY_PLAN_GIB = 20.4
"""docs/vlm.md memory plan (recipes.vlm.memory.rtx4090_plan, micro 1, checkpointing): the estimate to compare."""
MS_SWIFT_GIB = 22.0
"""ms-swift's published peak for Qwen2.5-VL-7B LoRA at batch 1 with a frozen vision tower (21.6-22 GiB)."""


def vlm_config(tiny: bool):
    from mmlnb_dist.config import load_config

    over = []
    if tiny:
        over = ["vlm.model=tiny", f"vlm.min_pixels={112 * 112}", f"vlm.max_pixels={112 * 112}",
                "vlm.generation.batch_size=4", "vlm.generation.max_new_tokens=8"]
    else:
        over = ["vlm.generation.batch_size=16", "vlm.generation.max_new_tokens=256"]
    return load_config("rtx4090", over)


def qwen25_vl_7b_config(tokenizer, dims=None):
    """Qwen2.5-VL-7B-Instruct's architecture (config.json values), token ids from `tokenizer`; `dims` (a
    `QwenVLDims`) only to check this path at a smaller size on the CPU."""
    from transformers import Qwen2_5_VLConfig

    from mmlnb_dist.recipes.vlm.memory import QwenVLDims

    d = dims or QwenVLDims()
    ids = tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=d.vocab, hidden_size=d.hidden, intermediate_size=d.intermediate,
                num_hidden_layers=d.layers, num_attention_heads=d.heads, num_key_value_heads=d.kv_heads,
                max_position_embeddings=128000, rms_norm_eps=1e-6, hidden_act="silu",
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
                bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
                tie_word_embeddings=False)
    vision = dict(depth=d.vision_depth, hidden_size=d.vision_hidden, intermediate_size=d.vision_intermediate,
                  num_heads=16, out_hidden_size=d.vision_out, patch_size=d.patch, spatial_merge_size=d.merge,
                  temporal_patch_size=d.temporal_patch, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
                  hidden_act="silu")
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                            video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                            vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=False)


def build_vlm(suite: Suite, cfg):
    """(model in bf16 on the device, processor)."""
    from mmlnb_dist.recipes.vlm import model as V

    v = cfg.vlm
    if v.model == V.TINY:
        model, proc = V.load_vlm(v.model, min_pixels=v.min_pixels, max_pixels=v.max_pixels, dtype=torch.bfloat16,
                                 seed=v.tiny_seed, cache_dir=suite.work / "vlm-cache")
        return model.to(suite.device), proc
    from mmlnb_dist.recipes.vlm.tiny_qwen import build_tiny_processor, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    proc = build_tiny_processor(tok, min_pixels=v.min_pixels, max_pixels=v.max_pixels)
    proc.image_processor.size = {"shortest_edge": v.min_pixels, "longest_edge": v.max_pixels}  # as load_processor
    return random_qwen25_vl(qwen25_vl_7b_config(tok), tok, suite.device).eval(), proc


def random_qwen25_vl(config, tokenizer, device):
    """Qwen2.5-VL of `config` with random bf16 weights, initialised on `device` (a GPU: 16 GB in seconds)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def images(n: int, size: int) -> List[Any]:
    from PIL import Image

    from mmlnb_dist.data.synthetic import CLASSES, random_stain, render_patch

    out = []
    for i in range(n):
        rng = np.random.default_rng([7, i])
        out.append(Image.fromarray(render_patch(CLASSES[i % 3], size, rng, random_stain(rng))))
    return out


def image_side(cfg) -> int:
    return int(round(cfg.vlm.max_pixels ** 0.5))


def train_batch(proc, cfg, micro: int, seq_len: int) -> Dict[str, torch.Tensor]:
    """`micro` sequences of exactly `seq_len` tokens: the recipe's encoded prompt + image, then answer ids."""
    from mmlnb_dist.recipes.vlm import model as V

    rng = np.random.default_rng(0)
    # Answer ids: any non-special token (a stray <|image_pad|> would break the image-token count).
    special = set(proc.tokenizer.all_special_ids)
    ordinary = np.array([i for i in range(len(proc.tokenizer)) if i not in special])
    encoded = []
    for img in images(micro, image_side(cfg)):
        enc = V.encode_prompt(proc, img, cfg.vlm.prompt)
        n_answer = seq_len - len(enc.input_ids)
        if n_answer < 1:
            raise ValueError(f"prompt and image take {len(enc.input_ids)} tokens, more than {seq_len}")
        answer = rng.choice(ordinary, n_answer).tolist()
        enc.input_ids = enc.input_ids + answer
        enc.mm_token_type_ids = enc.mm_token_type_ids + [0] * n_answer
        enc.labels = [-100] * (seq_len - n_answer) + answer
        encoded.append(enc)
    return V.collate(encoded, proc.tokenizer.pad_token_id, "right")


def offload_unavailable() -> str:
    """Why ZeRO-Offload cannot run here ('' when DeepSpeed's CPU Adam builds)."""
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        DeepSpeedCPUAdam([torch.nn.Parameter(torch.zeros(4))])
        return ""
    except Exception as err:  # a missing compiler/toolkit shows up as any of several exception types
        return f"DeepSpeed CPUAdam cannot build: {type(err).__name__}: {str(err)[:200]}"


def sequence_length(cfg, micro: int, tiny: bool, proc) -> int:
    """The memory plan's sequence (image tokens + 45 prompt + 256 answer = 401 at 256 px); tiny: prompt + 16."""
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.memory import estimate_memory

    if tiny:
        return len(V.encode_prompt(proc, images(1, image_side(cfg))[0], cfg.vlm.prompt).input_ids) + 16
    side = image_side(cfg)
    return estimate_memory(micro_batch=micro, image_hw=(side, side), min_pixels=cfg.vlm.min_pixels,
                           max_pixels=cfg.vlm.max_pixels, answer_tokens=256).seq_len


def measure_lora(suite: Suite, cfg, checkpointing: bool, offload: bool) -> Dict[str, Any]:
    from mmlnb_dist.core.distributed import DistEnv, init_engine_process_group, plan_batch
    from mmlnb_dist.core.engine import OptimizerSpec, build_engine
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.memory import estimate_memory

    if offload:
        reason = offload_unavailable()
        if reason:
            return {"status": "skipped", "reason": reason}
    v = cfg.vlm
    micro = v.micro_batch_per_gpu or 1
    torch.manual_seed(0)
    model, proc = build_vlm(suite, cfg)
    model.config.use_cache = False
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = V.apply_lora(model, v.lora)
    trainable, total = V.count_trainable(model)
    env = DistEnv(device=suite.device)
    dist = cfg.distributed.model_copy(update={"precision": "bf16", "zero_stage": 2 if offload else 0,
                                             "offload_optimizer": offload})
    init_engine_process_group(env, dist)
    built = build_engine(model, None, optimizer=OptimizerSpec("adamw", v.lr), schedule=v.lr_schedule,
                         total_steps=1000, plan=plan_batch(micro, 1, micro), dist=dist, env=env)
    engine = built.engine
    seq = sequence_length(cfg, micro, suite.tiny, proc)
    batch = {k: t.to(suite.device) for k, t in train_batch(proc, cfg, micro, seq).items()}
    batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
    engine.train()

    def step() -> None:
        loss = engine(**batch).loss
        engine.backward(loss)
        engine.step()

    warmup, steps = (1, 2) if suite.tiny else (2, 5)
    seconds = timed_steps(suite, step, warmup, steps)
    side = image_side(cfg)
    plan = estimate_memory(micro_batch=micro, image_hw=(side, side), min_pixels=v.min_pixels,
                           max_pixels=v.max_pixels, gradient_checkpointing=checkpointing, offload_optimizer=offload)
    row = {"tokens_per_s": round(micro * seq * steps / seconds, 1), "samples_per_s": round(micro * steps / seconds, 3),
           "step_s": round(seconds / steps, 3), "micro_batch": micro, "seq_len": seq, "lora_r": v.lora.r,
           "trainable_params": trainable, "total_params": total, "peak_memory_gib": suite.peak_memory_gib(),
           "plan_estimate_gib": None if suite.tiny else round(plan.total_gib, 2)}
    return row


def measure_describe(suite: Suite, cfg, preset: str = "greedy") -> Dict[str, Any]:
    """`describe`'s generation path (`model.describe_generate_kwargs`): greedy, or the authors' sampling drawn per
    image, at the profile's batch."""
    from mmlnb_dist.recipes.vlm import model as V

    g = cfg.vlm.generation.model_copy(update={"preset": preset})
    model, proc = build_vlm(suite, cfg)
    model.config.use_cache = True
    batch = {k: t.to(suite.device) for k, t in
             V.generation_batch(proc, images(g.batch_size, image_side(cfg)), cfg.vlm.prompt).items()}
    kwargs = V.describe_generate_kwargs(g, proc, batch)
    batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
    # Random weights would stop at an end token by chance: every row generates exactly max_new_tokens.
    kwargs["min_new_tokens"] = g.max_new_tokens
    with torch.no_grad():
        # The process's first full-length generation ran at half speed on an H200 (greedy 180 tokens/s first,
        # 376-382 after; sampling 197 first, 420-460 after): the first row warms up at full length, the others
        # with two tokens (kernels, allocator).
        warm = g.max_new_tokens if "describe" not in suite.warmed else 2
        model.generate(**batch, **{**kwargs, "max_new_tokens": warm, "min_new_tokens": warm})
        suite.warmed.add("describe")
        suite.sync()
        import time

        t0 = time.perf_counter()
        out = model.generate(**batch, **kwargs)
        suite.sync()
        seconds = time.perf_counter() - t0
    new = (out.shape[1] - batch["input_ids"].shape[1]) * out.shape[0]
    return {"descriptions_per_s": round(g.batch_size / seconds, 3), "tokens_per_s": round(new / seconds, 1),
            "batch": g.batch_size, "new_tokens": int(out.shape[1] - batch["input_ids"].shape[1]),
            "prompt_tokens": int(batch["input_ids"].shape[1]), "peak_memory_gib": suite.peak_memory_gib()}


def add_rows(suite: Suite) -> None:
    cfg = vlm_config(suite.tiny)
    micro = cfg.vlm.micro_batch_per_gpu
    model_name = "tiny Qwen2.5-VL" if suite.tiny else "Qwen2.5-VL-7B"

    def lora_row(ckpt: bool, offload: bool) -> None:
        name = (f"{model_name} LoRA r={cfg.vlm.lora.r} micro {micro}, "
                f"{'checkpointing' if ckpt else 'no checkpointing'}{', ZeRO-2 offload' if offload else ''}")
        suite.run_row("vlm", name, lambda: measure_lora(suite, cfg, ckpt, offload))

    lora_row(True, False)
    lora_row(False, False)
    g = cfg.vlm.generation
    for preset in ("greedy", "authors"):
        draw = "greedy" if preset == "greedy" else "authors' sampling, drawn per image"
        suite.run_row("describe", f"{model_name} batch {g.batch_size}, {g.max_new_tokens} new tokens, {draw}",
                      lambda p=preset: measure_describe(suite, cfg, p))
    lora_row(True, True)  # last: its first run may build DeepSpeed's CPU Adam (minutes)
