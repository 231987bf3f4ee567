"""Pathology foundation models by name: what each one is (hub id, architecture, output rule, input size,
normalisation, licence, gating) and the code that builds it as an `ImageEncoder`.

    encoder = IMAGE_ENCODERS["uni2-h"](pretrained=True)      # the real weights, from the HF cache or the Hub
    encoder = IMAGE_ENCODERS["uni2-h-tiny"](pretrained=False)  # same family and kwargs, tiny depth and width

Four loader kinds, each the loading code its model card gives:
  - `timm`: `timm.create_model("hf-hub:<id>", pretrained=True, **card_kwargs)`; the architecture alone (for an
    export being rebuilt, or `pretrained=false`) is `timm.create_model(architecture, **architecture_kwargs,
    **card_kwargs)`, the values the Hub config supplies spelled out here.
  - `transformers`: `AutoModel.from_pretrained(<id>)`; the architecture alone is the recorded config.
  - `open_clip`: `open_clip.create_model("hf-hub:<id>")`, the image tower (`model.visual`, projection included).
  - `transformers-clip`: `CLIPModel.from_pretrained(<id>)`, its vision model and visual projection.

Every entry's `forward` applies the card's output rule, and the encoder declares the card's mean/std and input
size (`encoder.mean`, `.std`, `.input_size`; `image_normalisation(name)` gives them without building).
Weights come from `model.image_encoder.weights_path` (a local file or model folder: nothing downloaded) or the
Hugging Face cache (`HF_HUB_OFFLINE=1` works once the files are there); a gated model that is not there raises
`EncoderError` with the steps to get it. Values taken from the model cards; docs/encoders.md says which could
not be checked against the Hub here (the machine is offline).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from ..core.progress import route_library_bars
from .encoders_base import (IMAGENET_MEAN, IMAGENET_STD, EncoderError, ImageEncoder, hub_download_hint,
                            load_state_file, load_weights)

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""The OpenAI CLIP statistics that QuiltNet and PLIP keep."""

NON_COMMERCIAL = ("CC-BY-NC", "non-commercial", "research use")


@dataclass(frozen=True)
class PathologyModel:
    """One registry entry: everything needed to build the encoder and to state where its weights may be used."""

    name: str
    loader: str
    """`timm`, `transformers`, `open_clip` or `transformers-clip`."""
    hub_id: str
    """What the model card passes to its loader (timm and open_clip names keep their `hf-hub:` prefix)."""
    architecture: str
    """timm / open_clip architecture name the Hub config points to; empty for transformers (see `config`)."""
    card_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments the model card passes with the hub id (timm: layer classes by name, see `_timm_kwargs`)."""
    architecture_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """What the Hub config adds for the same architecture, so that it can be built without the Hub."""
    config: Mapping[str, Any] = field(default_factory=dict)
    """transformers config values (`transformers` / `transformers-clip` loaders)."""
    width: int = 0
    """Transformer width (the token dimension) of the full model."""
    output: str = "pooled"
    """`pooled` (timm's pooled class token), `cls+mean_patch` (class token concatenated with the mean of the
    patch tokens, register tokens skipped), `cls` (transformers last_hidden_state[:, 0]), `clip_image` (the
    projected image embedding of a CLIP model)."""
    embed_dim: int = 0
    """Size of one output vector (the model card's embedding size)."""
    input_size: int = 224
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    licence: str = ""
    gated: bool = False
    notes: str = ""

    @property
    def repo_id(self) -> str:
        """The Hugging Face repository (`owner/name`), without the loader's prefix."""
        return self.hub_id.split(":", 1)[1] if ":" in self.hub_id else self.hub_id

    @property
    def commercial_use(self) -> bool:
        return not any(mark.lower() in self.licence.lower() for mark in NON_COMMERCIAL)

    def output_dim(self, width: int, projection_dim: Optional[int] = None) -> int:
        """The embedding size the output rule gives for a transformer of `width` (and a CLIP projection)."""
        if self.output == "cls+mean_patch":
            return 2 * width
        if self.output == "clip_image":
            return int(projection_dim if projection_dim is not None else self.embed_dim)
        return width


_SWIGLU = {"mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"}

PATHOLOGY_MODELS: Dict[str, PathologyModel] = {m.name: m for m in [
    PathologyModel(
        "uni", "timm", "hf-hub:MahmoodLab/uni", "vit_large_patch16_224",
        card_kwargs={"init_values": 1e-5, "dynamic_img_size": True},
        architecture_kwargs={"img_size": 224, "patch_size": 16, "num_classes": 0},
        width=1024, output="pooled", embed_dim=1024, licence="CC-BY-NC-ND-4.0", gated=True),
    PathologyModel(
        "uni2-h", "timm", "hf-hub:MahmoodLab/UNI2-h", "vit_giant_patch14_224",
        card_kwargs={"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5,
                     "embed_dim": 1536, "mlp_ratio": 2.66667 * 2, "num_classes": 0, "no_embed_class": True,
                     **_SWIGLU, "reg_tokens": 8, "dynamic_img_size": True},
        width=1536, output="pooled", embed_dim=1536, licence="CC-BY-NC-ND-4.0", gated=True),
    PathologyModel(
        "virchow2", "timm", "hf-hub:paige-ai/Virchow2", "vit_huge_patch14_224",
        card_kwargs=dict(_SWIGLU),
        architecture_kwargs={"img_size": 224, "init_values": 1e-5, "num_classes": 0, "mlp_ratio": 5.3375,
                             "reg_tokens": 4, "global_pool": "", "dynamic_img_size": True},
        width=1280, output="cls+mean_patch", embed_dim=2560, licence="CC-BY-NC-ND-4.0", gated=True,
        notes="output: class token + mean of the patch tokens (the 4 register tokens skipped)"),
    PathologyModel(
        "h-optimus-0", "timm", "hf-hub:bioptimus/H-optimus-0", "vit_giant_patch14_reg4_dinov2",
        card_kwargs={"init_values": 1e-5, "dynamic_img_size": False},
        architecture_kwargs={"img_size": 224, "num_classes": 0, "global_pool": "token"},
        width=1536, output="pooled", embed_dim=1536,
        mean=(0.707223, 0.578729, 0.703617), std=(0.211883, 0.230117, 0.177517),
        licence="Apache-2.0", gated=True),
    PathologyModel(
        "prov-gigapath", "timm", "hf_hub:prov-gigapath/prov-gigapath", "vit_giant_patch14_dinov2",
        architecture_kwargs={"img_size": 224, "patch_size": 16, "embed_dim": 1536, "depth": 40, "num_heads": 24,
                             "init_values": 1e-5, "mlp_ratio": 5.33334, "num_classes": 0},
        width=1536, output="pooled", embed_dim=1536, licence="Apache-2.0", gated=True,
        # The card's crop is not implemented: every path (training, features extract, predict, the export)
        # shares data.images.ImageTransform, and a per-model resize would have to be recorded in all of them.
        notes="card transform: resize 256, centre crop 224 (not applied: images are resized straight to the "
              "image size, see docs/encoders.md)"),
    PathologyModel(
        "phikon-v2", "transformers", "owkin/phikon-v2", "",
        config={"model_type": "dinov2", "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                "patch_size": 16, "image_size": 224, "mlp_ratio": 4},
        width=1024, output="cls", embed_dim=1024, licence="Owkin non-commercial licence (other)", gated=False),
    PathologyModel(
        "quiltnet-b-32", "open_clip", "hf-hub:wisdomik/QuiltNet-B-32", "ViT-B-32",
        width=768, output="clip_image", embed_dim=512, mean=CLIP_MEAN, std=CLIP_STD, licence="MIT", gated=False),
    PathologyModel(
        "plip", "transformers-clip", "vinid/plip", "",
        config={"projection_dim": 512, "vision_config": {"hidden_size": 768, "num_hidden_layers": 12,
                                                         "num_attention_heads": 12, "patch_size": 32,
                                                         "image_size": 224, "intermediate_size": 3072}},
        width=768, output="clip_image", embed_dim=512, mean=CLIP_MEAN, std=CLIP_STD,
        licence="research use only (model card terms; no SPDX licence)", gated=False),
]}

TINY_SUFFIX = "-tiny"
"""`<name>-tiny`: the same loader, architecture family and kwargs at tiny depth and width, random weights."""

TINY_TIMM = {"embed_dim": 48, "depth": 2, "num_heads": 4}  # 48 x mlp_ratio 5.33 stays even (SwiGLU)
TINY_DINOV2 = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
TINY_CLIP_VISION = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128}
TINY_CLIP_TEXT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
TINY_PROJECTION = 32
TINY_OPEN_CLIP = {"embed_dim": TINY_PROJECTION,
                  "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 16, "patch_size": 32},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def tiny_width(entry: PathologyModel) -> int:
    """The transformer width of an entry's tiny form."""
    return {"timm": TINY_TIMM["embed_dim"], "transformers": TINY_DINOV2["hidden_size"],
            "open_clip": TINY_OPEN_CLIP["vision_cfg"]["width"],
            "transformers-clip": TINY_CLIP_VISION["hidden_size"]}[entry.loader]


class PathologyImageEncoder(ImageEncoder):
    """A pathology foundation model's image tower with the output rule of its card: image -> `out_dim` vector."""

    def __init__(self, entry: PathologyModel, name: str, body: nn.Module, out_dim: int):
        super().__init__(name, body, out_dim, pool=False, mean=entry.mean, std=entry.std,
                         input_size=entry.input_size, licence=entry.licence, source=entry.hub_id)
        self.output = entry.output
        self.loader = entry.loader

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.output == "cls+mean_patch":
            tokens = self.body.forward_features(pixel_values)  # [B, prefix + patches, D] after the final norm
            prefix = int(self.body.num_prefix_tokens)           # class token + register tokens
            return torch.cat([tokens[:, 0], tokens[:, prefix:].mean(dim=1)], dim=-1)
        if self.output == "cls":
            return self.body(pixel_values=pixel_values).last_hidden_state[:, 0]
        if self.output == "clip_image" and self.loader == "transformers-clip":
            pooled = self.body["vision_model"](pixel_values=pixel_values).pooler_output
            return self.body["visual_projection"](pooled)
        return self.body(pixel_values)  # timm pooled class token (num_classes=0); open_clip projected embedding


# --- building ----------------------------------------------------------------------------------------------

def _timm_kwargs(kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """Layer classes are recorded by name (plain data); timm wants the classes."""
    from timm.layers import SwiGLUPacked

    classes = {"SwiGLUPacked": SwiGLUPacked, "SiLU": nn.SiLU, "GELU": nn.GELU}
    return {k: classes[v] if k in ("mlp_layer", "act_layer") else v for k, v in kwargs.items()}


def _timm_body(entry: PathologyModel, from_hub: bool, tiny: bool) -> nn.Module:
    import timm

    if from_hub:
        return timm.create_model(entry.hub_id, pretrained=True, **_timm_kwargs(entry.card_kwargs))
    kwargs = {**entry.architecture_kwargs, **entry.card_kwargs, **(TINY_TIMM if tiny else {})}
    return timm.create_model(entry.architecture, pretrained=False, **_timm_kwargs(kwargs))


def _dinov2_config(entry: PathologyModel, tiny: bool):
    from transformers import AutoConfig

    values = {k: v for k, v in entry.config.items() if k != "model_type"}
    return AutoConfig.for_model(entry.config["model_type"], **{**values, **(TINY_DINOV2 if tiny else {})})


def _clip_config(entry: PathologyModel, tiny: bool):
    from transformers import CLIPConfig

    vision = {**entry.config["vision_config"], **(TINY_CLIP_VISION if tiny else {})}
    text = TINY_CLIP_TEXT if tiny else {}
    projection = TINY_PROJECTION if tiny else entry.config["projection_dim"]
    return CLIPConfig(vision_config=vision, text_config=text, projection_dim=projection)


def _clip_vision_body(model) -> nn.Module:
    """Only the image side of a transformers CLIPModel is kept (the text tower is not needed for images)."""
    return nn.ModuleDict({"vision_model": model.vision_model, "visual_projection": model.visual_projection})


def _body(entry: PathologyModel, from_hub: bool, folder: Optional[Path], tiny: bool) -> nn.Module:
    """The loader's native module: from the Hub/HF cache, from a local model folder, or architecture only."""
    route_library_bars()
    if entry.loader == "timm":
        return _timm_body(entry, from_hub, tiny)
    if entry.loader == "transformers":
        from transformers import AutoModel

        if from_hub or folder is not None:
            return AutoModel.from_pretrained(str(folder) if folder is not None else entry.hub_id)
        return AutoModel.from_config(_dinov2_config(entry, tiny))
    if entry.loader == "transformers-clip":
        from transformers import CLIPModel

        if from_hub or folder is not None:
            return _clip_vision_body(CLIPModel.from_pretrained(str(folder) if folder is not None else entry.hub_id))
        return _clip_vision_body(CLIPModel(_clip_config(entry, tiny)))
    if entry.loader == "open_clip":
        import open_clip

        if from_hub:
            # require_pretrained: a missing checkpoint is an error, never a silently random tower
            return open_clip.create_model(entry.hub_id, load_weights=True, require_pretrained=True).visual
        return open_clip.create_model(entry.architecture, pretrained=None, **(TINY_OPEN_CLIP if tiny else {})).visual
    raise EncoderError(f"pathology encoder '{entry.name}': unknown loader kind {entry.loader!r}")


def _out_dim(entry: PathologyModel, body: nn.Module) -> int:
    if entry.loader == "timm":
        return entry.output_dim(int(body.embed_dim))
    if entry.loader == "transformers":
        return entry.output_dim(int(body.config.hidden_size))
    if entry.loader == "transformers-clip":
        return entry.output_dim(int(body["vision_model"].config.hidden_size),
                                int(body["visual_projection"].out_features))
    return entry.output_dim(int(body.transformer.width), int(body.output_dim))


def access_message(entry: PathologyModel, err: BaseException) -> str:
    """How to get a model that is not on this machine (gated models need an accepted request and a login); the
    download step is `hub_download_hint`'s, the one the text encoders give too (it names the command)."""
    url = f"https://huggingface.co/{entry.repo_id}"
    steps = (f"request access at {url} (gated: accept its conditions there, {entry.licence}), then run "
             f"`huggingface-cli login` (or set HF_TOKEN) on a machine with internet, and "
             if entry.gated else f"its page: {url}; ")
    return (f"image encoder '{entry.name}' ({entry.hub_id}) is not available on this machine "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}); {steps}"
            f"{hub_download_hint(entry.repo_id)}. HF_HOME / HF_HUB_CACHE move the cache (copy the folder to offline "
            f"machines), or set model.image_encoder.weights_path to a local weights file or model folder")


def _weights_file(folder: Path) -> Path:
    for name in ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin",
                 "open_clip_pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise EncoderError(f"no weights file (model.safetensors, open_clip_model.safetensors, pytorch_model.bin) "
                       f"in {folder}")


def _check_folder_model_type(entry: PathologyModel, name: str, folder: Path) -> None:
    """Refuse a model folder of another kind of model (a BERT text encoder's for plip): transformers would build a
    random CLIP from it without a word, or a BERT that fails in its forward pass. A folder without a readable
    config.json is left to `from_pretrained`, whose error says what is missing."""
    import json

    expected = "clip" if entry.loader == "transformers-clip" else entry.config.get("model_type")
    try:
        found = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return
    if expected and found and found != expected:
        raise EncoderError(f"model.image_encoder.weights_path {folder} holds a '{found}' model (config.json "
                           f"model_type), but '{name}' ({entry.hub_id}) is a '{expected}' model; give the folder as "
                           f"downloaded from {entry.hub_id} (config.json and its weights), or a weights file")


def build_pathology_encoder(name: str, pretrained: bool, weights_path: Optional[str] = None) -> ImageEncoder:
    """`name` (an entry, or `<entry>-tiny`) as an `ImageEncoder`. Weights: `weights_path` (a state-dict file,
    or a model folder as downloaded from the Hub), else the Hub / HF cache when `pretrained`, else random."""
    tiny = name.endswith(TINY_SUFFIX)
    entry = PATHOLOGY_MODELS[name[: -len(TINY_SUFFIX)] if tiny else name]
    if tiny and pretrained and weights_path is None:
        raise EncoderError(f"image encoder '{name}' is a random tiny model without pretrained weights; set "
                           f"model.image_encoder.pretrained=false")
    local = Path(weights_path) if weights_path else None
    if local is not None and not local.exists():
        raise EncoderError(f"model.image_encoder.weights_path {local} does not exist")
    folder = local if local is not None and local.is_dir() and entry.loader.startswith("transformers") else None
    if folder is not None:
        _check_folder_model_type(entry, name, folder)
    try:
        body = _body(entry, pretrained and local is None, folder, tiny)
    except (OSError, ValueError, RuntimeError) as err:
        if folder is not None:  # a local model folder that is not one (empty, another model's, cut short)
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise EncoderError(f"model.image_encoder.weights_path {folder} is no {entry.loader} model folder of "
                               f"'{name}' ({type(err).__name__}: {reason}); give the folder as downloaded from "
                               f"{entry.hub_id} (config.json and its weights), or a weights file") from None
        if not pretrained or local is not None:
            raise
        raise EncoderError(access_message(entry, err)) from None
    if local is not None and folder is None:
        target = body
        state = load_state_file(_weights_file(local) if local.is_dir() else local)
        if entry.loader == "open_clip" and any(k.startswith("visual.") for k in state):
            # a whole-CLIP checkpoint (as open_clip saves one): keep the image tower; a tower file is used as it is
            state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
        unexpected = load_weights(target, state, local, name, which=entry.hub_id)
        if unexpected:
            log.warning("%s: %d weights not used by '%s', e.g. %s", local, len(unexpected), name, unexpected[:3])
    return PathologyImageEncoder(entry, name, body, _out_dim(entry, body))


def pathology_builders() -> Dict[str, Callable[[bool], ImageEncoder]]:
    """Registry names -> `builder(pretrained)`, for every entry and its tiny form."""
    builders: Dict[str, Callable[[bool], ImageEncoder]] = {}
    for name in PATHOLOGY_MODELS:
        for variant in (name, name + TINY_SUFFIX):
            builders[variant] = lambda pretrained, _n=variant: build_pathology_encoder(_n, pretrained)
    return builders


def pathology_entry(name: str) -> Optional[PathologyModel]:
    """The entry behind a registry name (`uni2-h` or `uni2-h-tiny`); None for other encoders."""
    return PATHOLOGY_MODELS.get(name[: -len(TINY_SUFFIX)] if name.endswith(TINY_SUFFIX) else name)
