"""Checkpoints of the fusion stage: resumable DeepSpeed checkpoints, retention, and the inference export.

Layout of a run folder:

    runs/<name>/checkpoints/epoch-0003/...   DeepSpeed checkpoint (engine.save_checkpoint), one per saved epoch
    runs/<name>/checkpoints/latest           DeepSpeed's pointer to the newest tag
    runs/<name>/checkpoints/best.json        {"tag", "epoch", "metric", "value"}: the checkpoint kept as best
    runs/<name>/export/model.safetensors     consolidated fp32 weights of the best checkpoint
    runs/<name>/export/model_config.json     classes, encoder names, model config, preprocessing
    runs/<name>/export/text_encoder/         tokenizer files and the transformers config of the text encoder

Client state stored with every checkpoint: the completed epoch, the curriculum phase, the best metric so
far, the data position and the RNG states (python, numpy, torch). Resume is at epoch granularity: a run killed
mid-epoch restarts that epoch from its beginning (the loader's shuffle is seeded by the epoch, so the replayed
epoch sees the same data). Mid-epoch resume is not offered (WebDataset cannot seek a stream).
"""
from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

TAG_RE = re.compile(r"^epoch-(\d+)$")
EXPORT_FORMAT = "mmlnb-fusion-export/1"


def epoch_tag(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def rng_state() -> Dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def list_tags(ckpt_dir: Path) -> List[str]:
    """Checkpoint tags present, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    tags = [p.name for p in ckpt_dir.iterdir() if p.is_dir() and TAG_RE.match(p.name)]
    return sorted(tags, key=lambda t: int(TAG_RE.match(t).group(1)))


def latest_tag(ckpt_dir: Path) -> Optional[str]:
    """DeepSpeed's `latest` pointer when present and valid, else the newest tag folder."""
    pointer = ckpt_dir / "latest"
    if pointer.is_file():
        tag = pointer.read_text().strip()
        if (ckpt_dir / tag).is_dir():
            return tag
    tags = list_tags(ckpt_dir)
    return tags[-1] if tags else None


def read_best(ckpt_dir: Path) -> Optional[Dict[str, Any]]:
    path = ckpt_dir / "best.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_best(ckpt_dir: Path, best: Dict[str, Any]) -> None:
    tmp = ckpt_dir / "best.json.tmp"
    tmp.write_text(json.dumps(best, indent=2))
    tmp.replace(ckpt_dir / "best.json")


def save_checkpoint(engine, ckpt_dir: Path, epoch: int, client_state: Dict[str, Any]) -> str:
    """Collective: every rank calls it (DeepSpeed writes each rank's optimizer partition)."""
    tag = epoch_tag(epoch)
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client_state, save_latest=True)
    return tag


def apply_retention(ckpt_dir: Path, keep: int, protect: Sequence[str] = ()) -> List[str]:
    """Delete all but the `keep` newest tags, never a protected one (the best). Rank 0 only, after a barrier."""
    tags = list_tags(ckpt_dir)
    removed = []
    for tag in tags[:-keep] if keep > 0 else tags:
        if tag in protect:
            continue
        shutil.rmtree(ckpt_dir / tag, ignore_errors=True)
        removed.append(tag)
    return removed


def load_checkpoint(engine, ckpt_dir: Path, tag: Optional[str] = None,
                    module_only: bool = False) -> Tuple[Optional[str], Dict[str, Any]]:
    """Load a checkpoint (the latest by default) into the engine; returns (tag, client_state)."""
    tag = tag or latest_tag(ckpt_dir)
    if tag is None:
        return None, {}
    path, client = engine.load_checkpoint(
        str(ckpt_dir), tag=tag, load_module_only=module_only, load_optimizer_states=not module_only,
        load_lr_scheduler_states=not module_only,
    )
    if path is None:
        raise RuntimeError(f"could not load checkpoint {ckpt_dir / tag}")
    return tag, client or {}


# ---------------------------------------------------------------------------------------------------------
# Export for inference
# ---------------------------------------------------------------------------------------------------------

def full_fp32_state_dict(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """Consolidated fp32 weights. Collective under ZeRO 1/2 (master weights are partitioned across ranks and
    gathered by DeepSpeed's `safe_get_full_fp32_param`); buffers (batch-norm statistics) come from the module."""
    from deepspeed.utils import safe_get_full_fp32_param

    params = dict(module.named_parameters())
    state: Dict[str, torch.Tensor] = {}
    for name, tensor in module.state_dict().items():  # persistent buffers only, as load_state_dict expects
        if name in params:
            full = safe_get_full_fp32_param(params[name])
            tensor = full if full is not None else params[name].detach()
        tensor = tensor.detach().cpu()
        state[name] = (tensor.float() if tensor.is_floating_point() else tensor).clone()
    return state


def export_model(state: Dict[str, torch.Tensor], model, model_cfg, classes: Sequence[str], export_dir: Path,
                 extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write model.safetensors, model_config.json and the text encoder's tokenizer/config (rank 0 only)."""
    from safetensors.torch import save_file

    export_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(export_dir / "model.safetensors"))
    if model.text_encoder is not None:
        text_dir = export_dir / "text_encoder"
        model.text_encoder.tokenizer.save_pretrained(str(text_dir))
        model.text_encoder.model.config.save_pretrained(str(text_dir))
    meta = {
        "format": EXPORT_FORMAT,
        "classes": list(classes),
        "image_encoder": model.image_encoder.name if model.image_encoder is not None else None,
        "text_encoder": model.text_encoder.name if model.text_encoder is not None else None,
        "model": model_cfg.model_dump(mode="json"),
        "preprocessing": {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]},
        **(extra or {}),
    }
    (export_dir / "model_config.json").write_text(json.dumps(meta, indent=2))
    return export_dir


def load_exported_model(export_dir, device: str | torch.device = "cpu"
                        ) -> Tuple[torch.nn.Module, Optional[Callable[[List[str]], Dict[str, torch.Tensor]]], List[str]]:
    """Rebuild the classifier from an export folder, offline, with no pretrained downloads.

    Returns `(model, tokenize, classes)`:
      - `model`: a `FusionClassifier` in eval mode on `device`. Call
        `model(pixel_values=x, **tokenize(texts))["logits"]` with x float[B,3,S,S] normalised with
        ImageNet mean/std (`model_config.json["preprocessing"]`, S = `["image_size"]`); softmax gives
        class probabilities in `classes` order. `["image_logits"]` is the image-only head, `["alpha"]` the
        PRMF text weight.
      - `tokenize(list_of_str) -> {"input_ids", "attention_mask"}` with the training tokenizer and max length
        (None for the image_only ablation, which takes no text).
      - `classes`: class names, index = logit column (NB: UD=0, PD=1, D=2 unless the manifest said otherwise).
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from .config import ModelConfig
    from .models.classifier import FusionClassifier
    from .models.encoders import IMAGE_ENCODERS, TextEncoder

    export_dir = Path(export_dir)
    meta_path = export_dir / "model_config.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: not a fusion export folder")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{meta_path}: unknown export format {meta.get('format')!r}")
    cfg = ModelConfig.model_validate(meta["model"])
    image = None
    if meta["image_encoder"] is not None:
        image = IMAGE_ENCODERS[meta["image_encoder"]](False)  # architecture only; weights come from the export
    text = None
    if meta["text_encoder"] is not None:
        text_dir = str(export_dir / "text_encoder")
        tokenizer = AutoTokenizer.from_pretrained(text_dir)
        net = AutoModel.from_config(AutoConfig.from_pretrained(text_dir))
        text = TextEncoder(meta["text_encoder"], net, tokenizer, cfg.text_encoder.pooling, cfg.text_encoder.max_length)
    model = FusionClassifier(image, text, cfg.fusion, len(meta["classes"]))
    model.load_state_dict(load_file(str(export_dir / "model.safetensors")), strict=True)
    model.to(device).eval()
    tokenize = text.tokenize if text is not None else None
    return model, tokenize, list(meta["classes"])
