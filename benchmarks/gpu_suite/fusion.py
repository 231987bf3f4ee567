"""(a) Fusion training samples/s and model FLOP utilisation, per curriculum phase, as the fusion recipe trains.

Full size: VGG16 (torchvision, random weights) + BERT-base (transformers `BertConfig()` defaults, random
weights; the MiniLM package's uncased BERT vocabulary as tokenizer, no download), PRMF fusion, 224 px, batch
32, bf16 DeepSpeed engine (ZeRO 0), the rtx4090 profile's model, optimizer and curriculum phases. As in the
recipe, a frozen encoder's features come from the feature cache (so a frozen branch costs nothing per step:
the phase where both are frozen trains the heads from cached features). `--tiny`: the tiny encoders, batch 4,
64 px, on the CPU, through the same code.
"""
from __future__ import annotations

from typing import Any, Dict

import torch

from .common import Suite, count_flops, timed_steps


def fusion_config(tiny: bool):
    from mmlnb_dist.config import load_config

    over = ["fusion.model.image_encoder.pretrained=false"]
    if tiny:
        over += ["fusion.model.image_encoder.name=tiny", "fusion.model.text_encoder.name=tiny-bert",
                 "fusion.model.text_encoder.max_length=32", "train.global_batch_size=4",
                 "data.loader.image_size=64"]
    return load_config("rtx4090", over)


def build_model(cfg, num_classes: int):
    """The recipe's classifier; full size builds BERT-base from its config (random weights, no download)."""
    from mmlnb_dist.models.encoders import TextEncoder, build_image_encoder, minilm_dir
    from mmlnb_dist.recipes.fusion.model import FusionClassifier, build_classifier

    m = cfg.fusion.model
    if m.text_encoder.name != "bert-base-uncased":
        return build_classifier(m, num_classes)
    from transformers import AutoTokenizer, BertConfig, BertModel

    text = TextEncoder(m.text_encoder.name, BertModel(BertConfig()), AutoTokenizer.from_pretrained(str(minilm_dir())),
                       m.text_encoder.pooling, m.text_encoder.max_length)
    return FusionClassifier(build_image_encoder(m.image_encoder), text, m, num_classes)


def engine_for(cfg, model, suite: Suite):
    from mmlnb_dist.core.distributed import DistEnv, init_engine_process_group, plan_batch
    from mmlnb_dist.core.engine import OptimizerSpec, build_engine

    env = DistEnv(device=suite.device)
    dist = cfg.distributed.model_copy(update={"precision": "bf16", "zero_stage": 0})
    init_engine_process_group(env, dist)
    t = cfg.train
    plan = plan_batch(t.global_batch_size, 1, None)
    # DeepSpeed's bf16 casts parameters only: batch-norm running statistics (the tiny encoder has them; VGG16
    # does not) would stay fp32 and batch_norm refuses the mix on the CPU. Cast the whole module first.
    model = model.to(suite.device, torch.bfloat16)
    return build_engine(model, model.param_groups(), optimizer=OptimizerSpec(t.optimizer, t.lr, t.weight_decay),
                        schedule=t.lr_schedule, total_steps=1000, plan=plan, dist=dist, env=env)


def add_rows(suite: Suite, peak_flops) -> None:
    cfg = fusion_config(suite.tiny)
    phases = cfg.fusion.curriculum.phases
    for index, phase in enumerate(phases):
        what = (f"phase {index}: image {'trains' if phase.train_image_encoder else 'frozen'}, "
                f"text {'trains' if phase.train_text_encoder else 'frozen'}")
        suite.run_row("fusion", what, lambda p=phase: measure_phase(suite, cfg, p, peak_flops))


def measure_phase(suite: Suite, cfg, phase, peak_flops) -> Dict[str, Any]:
    from mmlnb_dist.recipes.fusion.curriculum import curriculum_loss

    torch.manual_seed(0)
    batch = cfg.train.global_batch_size
    size = cfg.data.loader.image_size
    model = build_model(cfg, num_classes=3)
    built = engine_for(cfg, model, suite)
    engine, dev = built.engine, suite.device
    model.set_trainable(phase.train_image_encoder, phase.train_text_encoder)
    built.schedule.set_frozen([n for n, on in (("image_encoder", model.image_trainable),
                                               ("text_encoder", model.text_trainable)) if not on])
    dtype = next(model.parameters()).dtype
    # Text of description length: the token limit (descriptions run up to 256 generated tokens).
    seq = model.text_encoder.max_length
    inputs: Dict[str, torch.Tensor] = {}
    with torch.no_grad():
        images = torch.randn(batch, 3, size, size, device=dev, dtype=dtype)
        ids = torch.randint(1000, 30000, (batch, seq), device=dev)
        mask = torch.ones_like(ids)
        # A frozen encoder's features come from the recipe's feature cache: computed once, here outside timing.
        if model.image_trainable:
            inputs["pixel_values"] = images
        else:
            inputs["image_features"] = model.encode_image(images)
        if model.text_trainable:
            inputs.update(input_ids=ids, attention_mask=mask)
        else:
            inputs["text_features"] = model.encode_text(ids, mask)
    labels = torch.randint(0, 3, (batch,), device=dev)
    engine.train()

    def step() -> None:
        out = engine(**inputs)
        loss = curriculum_loss(out["logits"], out["image_logits"], labels, 0.5)
        engine.backward(loss)
        engine.step()

    warmup, steps = (1, 2) if suite.tiny else (3, 10)
    flops = count_flops(step)
    seconds = timed_steps(suite, step, warmup, steps)
    per_s = steps / seconds
    row = {"samples_per_s": round(batch * per_s, 2), "batch": batch, "image_px": size, "text_tokens": seq,
           "flops_per_step": flops, "tflops_per_step": flops / 1e12, "achieved_tflops": round(flops * per_s / 1e12, 3),
           "mfu": round(flops * per_s / peak_flops, 4) if peak_flops else None,
           "peak_memory_gib": suite.peak_memory_gib(), "precision": "bf16 (DeepSpeed)",
           "encoders": f"{cfg.fusion.model.image_encoder.name} + {model.text_encoder.name}"}
    return row
