"""The fusion recipe's inference export: consolidated fp32 safetensors and a JSON description, no pickles.

    runs/<name>/export/model.safetensors     consolidated fp32 weights of the best checkpoint
    runs/<name>/export/model_config.json     format, classes, encoder names, the `fusion.model` section,
                                             preprocessing (image size, the image encoder's mean
                                             and std), `image_encoder_provenance` (name, source,
                                             weights digest, licence, gating)
    runs/<name>/export/text_encoder/         tokenizer files and the transformers config of the text encoder

`load_exported_model` rebuilds the classifier from these files alone, offline (no pretrained downloads).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ...core.divergence import EXPORT_REMEDY, load_finite
from ...core.errors import UserError
from ...core.files import EXPORT_DESCRIPTION, read_export_description, replace_text, start_export
from ...models.encoders import IMAGENET_MEAN, IMAGENET_STD, encoder_provenance
from .config import FusionModelConfig

EXPORT_FORMAT = "mmlnb-fusion-export/2"
OLDER_FORMATS = ("mmlnb-fusion-export/1",)


def export_model(state: Dict[str, torch.Tensor], model, model_cfg: FusionModelConfig, classes: Sequence[str],
                 export_dir: Path, image_size: int, extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write model.safetensors, model_config.json and the text encoder's tokenizer/config (rank 0 only)."""
    from safetensors.torch import save_file

    start_export(export_dir)  # model_config.json comes last: a folder without it is an unfinished export
    save_file({k: v.contiguous() for k, v in state.items()}, str(export_dir / "model.safetensors"))
    if model.text_encoder is not None:
        text_dir = export_dir / "text_encoder"
        model.text_encoder.tokenizer.save_pretrained(str(text_dir))
        model.text_encoder.model.config.save_pretrained(str(text_dir))
    image = model.image_encoder
    # The encoder's own normalisation (what training fed it) and where its weights come from: their licence
    # (non-commercial for several pathology models) must travel with every model built on them.
    mean, std = (image.mean, image.std) if image is not None else (IMAGENET_MEAN, IMAGENET_STD)
    meta = {
        "format": EXPORT_FORMAT,
        "classes": list(classes),
        "image_encoder": model.image_encoder.name if model.image_encoder is not None else None,
        "text_encoder": model.text_encoder.name if model.text_encoder is not None else None,
        "model": model_cfg.model_dump(mode="json"),
        "image_size": image_size,
        "preprocessing": {"image_mean": list(mean), "image_std": list(std)},
        "image_encoder_provenance": encoder_provenance(image) if image is not None else None,
        **(extra or {}),
    }
    replace_text(export_dir / EXPORT_DESCRIPTION, json.dumps(meta, indent=2))
    return export_dir


def read_export_config(export_dir: Union[str, Path]) -> Tuple[Dict[str, Any], FusionModelConfig]:
    """The export's description and its model section (format 1 stored the fusion block nested: flattened)."""
    meta_path = Path(export_dir) / EXPORT_DESCRIPTION
    meta = read_export_description(export_dir, "fusion")
    if meta.get("format") in OLDER_FORMATS:
        model = dict(meta["model"])
        model.update(model.pop("fusion", {}))
        meta["model"] = model
    elif meta.get("format") != EXPORT_FORMAT:
        raise UserError(f"{meta_path}: unknown export format {meta.get('format')!r}")
    return meta, FusionModelConfig.model_validate(meta["model"])


def build_model_from_export(export_dir: Union[str, Path]) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """The classifier's architecture from an export folder, weights not yet loaded; and its description."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from ...models.encoders import IMAGE_ENCODERS, TextEncoder
    from .model import FusionClassifier

    export_dir = Path(export_dir)
    meta, cfg = read_export_config(export_dir)
    image = None
    if meta["image_encoder"] is not None and meta["image_encoder"] not in IMAGE_ENCODERS:
        # (a newer version's or a plugin's encoder, a hand edit): a KeyError traceback from evaluate, register, serving
        raise UserError(f"{export_dir / EXPORT_DESCRIPTION}: image_encoder '{meta['image_encoder']}' is no image "
                        f"encoder of this installation (it has {', '.join(sorted(IMAGE_ENCODERS))}); load the export "
                        f"where that encoder is installed (the mmlnb-dist version that trained it)")
    if meta["image_encoder"] is not None:
        image = IMAGE_ENCODERS[meta["image_encoder"]](False)  # architecture only; weights come from the export
    text = None
    if meta["text_encoder"] is not None:
        text_dir = str(export_dir / "text_encoder")
        tokenizer = AutoTokenizer.from_pretrained(text_dir)
        net = AutoModel.from_config(AutoConfig.from_pretrained(text_dir))
        text = TextEncoder(meta["text_encoder"], net, tokenizer, cfg.text_encoder.pooling, cfg.text_encoder.max_length)
    return FusionClassifier(image, text, cfg, len(meta["classes"])), meta


Tokenize = Callable[[List[str]], Dict[str, torch.Tensor]]


def load_exported_model(export_dir, device: Union[str, torch.device] = "cpu"
                        ) -> Tuple[torch.nn.Module, Optional[Tokenize], List[str]]:
    """Rebuild the classifier from an export folder, offline, with no pretrained downloads.

    Returns `(model, tokenize, classes)`:
      - `model`: a `FusionClassifier` in eval mode on `device`. Call
        `model(pixel_values=x, **tokenize(texts))["logits"]` with x float[B,3,S,S] normalised with
        the mean and std of `model_config.json["preprocessing"]` (S = `["image_size"]`); softmax gives
        class probabilities in `classes` order. `["image_logits"]` is the image-only head, `["alpha"]` the
        PRMF text weight.
      - `tokenize(list_of_str) -> {"input_ids", "attention_mask"}` with the training tokenizer and max length
        (None for the image_only ablation, which takes no text).
      - `classes`: class names, index = logit column.
    """
    from ...core.tracking.registry import refuse_unpickling

    refuse_unpickling(Path(export_dir), "export folder")  # exports are safetensors + JSON; a pickle is foreign
    model, meta = build_model_from_export(export_dir)
    model.load_state_dict(load_finite(Path(export_dir) / "model.safetensors", EXPORT_REMEDY), strict=True)
    model.to(device).eval()
    tokenize = model.text_encoder.tokenize if model.text_encoder is not None else None
    return model, tokenize, list(meta["classes"])
