"""The image and text towers of one open_clip `CLIP` model (the interface of towers.ClipTowers).

    clip.model.towers.name = hf-hub:wisdomik/QuiltNet-B-32   QuiltNet (pathology CLIP, ViT-B/32) from the HF hub
                           = open_clip:ViT-B-32[:openai]      any open_clip built-in name [: pretrained tag]
                           = tiny-open_clip                   random, of the clip.model.towers.tiny sizes

Real models load with `open_clip.create_model_from_pretrained` (hf-hub) or `open_clip.create_model(name,
pretrained=tag)` and `open_clip.get_tokenizer`. They need the Hugging Face / open_clip cache: the hubs are
unreachable from this project's CI, so that path is kept and documented but only `tiny-open_clip` is tested.

The architecture travels as open_clip's own `open_clip_config.json` (`{"model_cfg", "preprocess_cfg"}`, the
`local-dir:` format), so an export rebuilds it with `open_clip.create_model("local-dir:<folder>")` and the
tokenizer with `open_clip.get_tokenizer("local-dir:<folder>")`: JSON and safetensors, never a pickle.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ...core.errors import ConfigError, UserError
from ...models.encoders_base import hub_download_hint
from .blocks import unfreeze_last_blocks, warn_cut_captions
from .config import ClipTowersConfig, TinyClipConfig

log = logging.getLogger(__name__)

OPEN_CLIP_CONFIG = "open_clip_config.json"
TINY_OPEN_CLIP = "tiny-open_clip"


def is_open_clip_name(name: str) -> bool:
    return name == TINY_OPEN_CLIP or name.startswith(("hf-hub:", "open_clip:"))


class OpenClipTowers(nn.Module):
    """One open_clip CLIP seen as two towers; knows no ranks, data pipeline or tracking."""

    kind = "open_clip"

    def __init__(self, name: str, clip: nn.Module, tokenizer, model_cfg: Dict[str, Any],
                 preprocess_cfg: Dict[str, Any]):
        super().__init__()
        self.name = name
        if clip.logit_scale.dim() == 0:
            # DeepSpeed broadcasts parameters as bytes, which a 0-dim tensor refuses (see towers.ClipTowers)
            clip.logit_scale = nn.Parameter(clip.logit_scale.detach().reshape(1),
                                            requires_grad=clip.logit_scale.requires_grad)
        self.clip = clip
        self.tokenizer = tokenizer  # not a module: rebuilt from the config (or the export folder)
        self.model_cfg = copy.deepcopy(model_cfg)
        self.preprocess_cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in preprocess_cfg.items()}
        self.max_length = _token_limit(name, clip, tokenizer)
        self._cut_reported = False  # captions cut to max_length are warned about once, as towers.ClipTowers does
        self.embed_dim = int(model_cfg["embed_dim"])
        size = getattr(clip.visual, "image_size", None)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.image_mean = tuple(float(x) for x in self.preprocess_cfg["mean"])
        self.image_std = tuple(float(x) for x in self.preprocess_cfg["std"])

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's learned log temperature: similarities are multiplied by `logit_scale.exp()`."""
        return self.clip.logit_scale

    @property
    def image_tower(self) -> nn.Module:
        """The image tower (a ViT, open_clip's ModifiedResNet or a timm model)."""
        return self.clip.visual

    @property
    def text_tower(self) -> nn.Module:
        """The text tower: a CustomTextCLIP's `clip.text` (a Hugging Face model, or open_clip's TextTransformer), or
        a CLIP's own transformer (its other text parts, never unfrozen, sit on the CLIP itself)."""
        text = getattr(self.clip, "text", None)
        return text if text is not None else self.clip.transformer

    @property
    def image_blocks(self) -> nn.ModuleList:
        blocks = getattr(getattr(self.clip.visual, "transformer", None), "resblocks", None)
        if blocks is None:
            raise ConfigError(_no_blocks(self.name, f"a {type(self.clip.visual).__name__} image tower, not a ViT"))
        return blocks

    @property
    def text_blocks(self) -> nn.ModuleList:
        owner = getattr(self.clip, "text", self.clip)  # CustomTextCLIP keeps its text tower apart
        blocks = getattr(getattr(owner, "transformer", None), "resblocks", None)
        if blocks is None:  # a Hugging Face text tower: its `transformer` is the transformers model
            raise ConfigError(_no_blocks(self.name, f"a Hugging Face text tower ({type(owner).__name__}), not "
                                                    f"open_clip's"))
        return blocks

    def set_unfrozen_blocks(self, n: int, key: str = "clip.model.towers.unfreeze_blocks",
                            sides: Tuple[str, ...] = ("image", "text")) -> None:
        """Freeze everything, then let the last `n` resblocks of each tower in `sides` train."""
        unfreeze_last_blocks(self, n, key, sides)

    def tokenize(self, texts: List[str]) -> Dict[str, torch.Tensor]:
        ids = self.tokenizer(list(texts))
        if not self._cut_reported:
            self._report_cut(list(texts), ids)
        # open_clip pools at the end token and masks causally: the mask is informational (pad id 0)
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}

    def _report_cut(self, texts: List[str], ids: torch.Tensor) -> None:
        """Warn once that captions were cut to the context length (open_clip's tokenizers cut silently). Only rows
        that fill it are re-tokenized, at a doubling length, to tell cut from fit and find the full length."""
        full = [i for i in range(len(texts)) if int(ids[i, -1]) != 0]
        cut = []
        for i in full:
            length = 2 * ids.shape[1]
            row = self.tokenizer([texts[i]], context_length=length)[0]
            while int(row[-1]) != 0 and length < 1 << 16:
                length *= 2
                row = self.tokenizer([texts[i]], context_length=length)[0]
            if int((row != 0).sum()) > ids.shape[1]:
                cut.append(int((row != 0).sum()))
        if cut:
            self._cut_reported = True
            # tiny-open_clip's context length is clip.model.towers.max_length; a real model's is its tokenizer's
            limit = "clip.model.towers.max_length" if self.name == TINY_OPEN_CLIP else f"'{self.name}' context length"
            warn_cut_captions(log, cut, len(texts), self.max_length, limit)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.shape[-1] != self.image_size:
            raise ConfigError(f"data.loader.image_size: {pixel_values.shape[-1]} px images, but the open_clip "
                              f"model '{self.name}' takes {self.image_size} px; set data.loader.image_size="
                              f"{self.image_size}")
        return self.clip.encode_image(pixel_values)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor = None) -> torch.Tensor:
        return self.clip.encode_text(input_ids)

    def save(self, folder: Path) -> None:
        """open_clip_config.json (+ a Hugging Face tokenizer's files when the model uses one) into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        model_cfg = copy.deepcopy(self.model_cfg)
        if model_cfg.get("text_cfg", {}).get("hf_model_name"):
            model_cfg["text_cfg"]["hf_model_pretrained"] = False  # weights come from model.safetensors
        (folder / OPEN_CLIP_CONFIG).write_text(json.dumps({"model_cfg": model_cfg,
                                                           "preprocess_cfg": self.preprocess_cfg}, indent=2))
        inner = getattr(self.tokenizer, "tokenizer", None)
        if inner is not None and hasattr(inner, "save_pretrained"):
            inner.save_pretrained(str(folder))


def _no_blocks(name: str, tower: str) -> str:
    return (f"clip.model.towers.name: '{name}' has {tower}: its blocks cannot be unfrozen; set "
            f"clip.model.towers.unfreeze_blocks=0 (frozen towers, the head trains) or choose an open_clip model with "
            f"a ViT image tower and open_clip's own text tower")


def check_open_clip_blocks(name: str, n: int, sides: Tuple[str, ...] = ("image", "text")) -> None:
    """The ConfigError that unfreezing `n` blocks of `open_clip:MODEL[:TAG]` would raise once built (a ResNet or
    timm image tower, a Hugging Face text tower), read from open_clip's bundled config: nothing built or fetched.
    Only the towers of `sides` (those the run uses) are checked. Other names (hf-hub: configs live on the Hub)
    are left to the build."""
    if not n or not name.startswith("open_clip:"):
        return
    model_cfg = _open_clip_model_config(name[len("open_clip:"):].partition(":")[0])
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    if "image" not in sides:
        vision = {}
    if "text" not in sides:
        text = {}
    if vision.get("timm_model_name"):
        raise ConfigError(_no_blocks(name, f"a timm ({vision['timm_model_name']}) image tower, not a ViT"))
    if isinstance(vision.get("layers"), (list, tuple)):
        raise ConfigError(_no_blocks(name, "a ResNet image tower, not a ViT"))
    if text.get("hf_model_name"):
        raise ConfigError(_no_blocks(name, f"a Hugging Face ({text['hf_model_name']}) text tower, not open_clip's"))


def _token_limit(name: str, clip: nn.Module, tokenizer) -> int:
    """The length open_clip's tokenizer pads every caption to: its own `context_length` (a Hugging Face text
    tower's CLIP reports the BERT's positions, e.g. 512, beyond what its tokenizer gives), else the CLIP's (open_clip's
    own text tower: its fixed-length position table)."""
    for source in (tokenizer, clip):
        length = getattr(source, "context_length", None)
        if length:
            return int(length)
    raise ConfigError(f"clip.model.towers.name: '{name}': neither its tokenizer ({type(tokenizer).__name__}) nor "
                      f"its model gives a context length (the caption token limit)")


def tiny_open_clip_config(cfg: TinyClipConfig, image_size: int, context_length: int) -> Dict[str, Any]:
    """open_clip's `model_cfg` of a CLIP of test size (the same sizes as the tiny transformers CLIP)."""
    if image_size % cfg.patch_size:
        raise ConfigError(f"data.loader.image_size: {image_size} is not a multiple of "
                          f"clip.model.towers.tiny.patch_size {cfg.patch_size}")
    if cfg.hidden % cfg.heads:
        raise ConfigError(f"clip.model.towers.tiny.hidden: {cfg.hidden} is not a multiple of "
                          f"clip.model.towers.tiny.heads {cfg.heads}")
    from open_clip.tokenizer import SimpleTokenizer

    return {"embed_dim": cfg.projection_dim,
            "vision_cfg": {"image_size": image_size, "layers": cfg.layers, "width": cfg.hidden,
                           "head_width": cfg.hidden // cfg.heads, "mlp_ratio": 2.0, "patch_size": cfg.patch_size},
            "text_cfg": {"context_length": context_length, "vocab_size": SimpleTokenizer().vocab_size,
                         "width": cfg.hidden, "heads": cfg.heads, "layers": cfg.layers, "mlp_ratio": 2.0}}


def _default_preprocess(image_size: int) -> Dict[str, Any]:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    return {"size": image_size, "mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD)}


def _load_pretrained(name: str) -> Tuple[nn.Module, Dict[str, Any]]:
    """(model with weights, its model_cfg) for `hf-hub:<repo>` or `open_clip:<model>[:<tag>]`."""
    import open_clip

    if name.startswith("hf-hub:"):
        from huggingface_hub import hf_hub_download

        # open_clip reads the same file from the repo; we keep its model_cfg to rebuild the architecture offline
        config = json.loads(Path(hf_hub_download(name[len("hf-hub:"):], OPEN_CLIP_CONFIG)).read_text())
        model, _ = open_clip.create_model_from_pretrained(name)
        return model, config["model_cfg"]
    model_name, _, tag = name[len("open_clip:"):].partition(":")
    model_cfg = _open_clip_model_config(model_name)
    return open_clip.create_model(model_name, pretrained=tag or None), model_cfg


def _open_clip_model_config(model_name: str) -> Dict[str, Any]:
    """open_clip's config of a built-in model, or the error naming the setting."""
    import open_clip

    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise ConfigError(f"clip.model.towers.name: '{model_name}' is not an open_clip model; choose one of "
                          f"open_clip.list_models() (e.g. ViT-B-32)")
    return model_cfg


def check_open_clip_name(name: str, image_size: Optional[int] = None) -> None:
    """For `open_clip:MODEL[:TAG]`, the error building it would raise, without building it: an unknown model, an
    unknown pretrained tag, weights neither in the Hugging Face cache nor on a reachable Hub (open_clip fetches
    a tag's weights from the Hub when its registry names a Hub repository, as it does for most), or an
    `image_size` (data.loader.image_size) other than the model's (open_clip's ViT does not interpolate)."""
    import open_clip

    model_name, _, tag = name[len("open_clip:"):].partition(":")
    model_cfg = _open_clip_model_config(model_name)
    if tag:  # else random initialisation: nothing to fetch
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if tag not in tags:
            raise ConfigError(f"clip.model.towers.name: '{name}': open_clip has no pretrained tag '{tag}' for "
                              f"{model_name} (its tags: {', '.join(tags)})")
        hub = open_clip.get_pretrained_cfg(model_name, tag).get("hf_hub", "")
        repo, filename = _hub_file(hub) if hub else ("", "")
        if hub and not _hub_weights_reachable(repo, filename):
            raise UserError(f"clip.model.towers.name: '{name}' could not be loaded offline (its weights, "
                            f"{hub}, are not in the Hugging Face cache and the Hub cannot be reached); "
                            f"{hub_download_hint(repo)}, or use 'tiny-open_clip'")
    size = model_cfg.get("vision_cfg", {}).get("image_size")
    size = size[0] if isinstance(size, (list, tuple)) else size
    if image_size is not None and size is not None and int(size) != image_size:  # as build_open_clip_towers
        raise ConfigError(f"data.loader.image_size: {image_size} px, but the open_clip model '{name}' takes "
                          f"{size} px; set data.loader.image_size={size}")


def _hub_file(hub: str) -> Tuple[str, str]:
    """open_clip's registry entry `org/repo/[filename]` as (repo, weights file), as open_clip reads it."""
    repo, filename = hub.rstrip("/"), "open_clip_pytorch_model.bin"
    if not hub.endswith("/"):
        repo, filename = hub.rsplit("/", 1)
    return repo, filename


def _hub_weights_reachable(repo: str, filename: str) -> bool:
    """Whether the weights file (or the safetensors file open_clip looks for first: `open_clip_model.safetensors`
    for its default file, `X.safetensors` for any other `X.bin` / `X.pth`) is cached, or the Hub answers that it
    has it. Nothing is downloaded."""
    import huggingface_hub

    if filename == "open_clip_pytorch_model.bin":
        safe = "open_clip_model.safetensors"
    else:
        safe = filename[:-4] + ".safetensors" if filename.endswith((".bin", ".pth")) else filename
    names = [safe, filename]
    for candidate in dict.fromkeys(names):
        if isinstance(huggingface_hub.try_to_load_from_cache(repo, candidate), str):
            return True
    try:
        return any(huggingface_hub.file_exists(repo, candidate) for candidate in dict.fromkeys(names))
    except Exception:  # noqa: BLE001 - offline mode, no network, a proxy: the Hub cannot be reached
        return False


def build_open_clip_towers(cfg: ClipTowersConfig, image_size: int) -> OpenClipTowers:
    """The open_clip towers named by `cfg` (seed the RNG first for tiny-open_clip), unfreezing not yet applied."""
    import open_clip
    from open_clip import CLIP, CLIPTextCfg, CLIPVisionCfg

    if cfg.name == TINY_OPEN_CLIP:
        model_cfg = tiny_open_clip_config(cfg.tiny, image_size, cfg.max_length)
        clip = CLIP(model_cfg["embed_dim"], CLIPVisionCfg(**model_cfg["vision_cfg"]),
                    CLIPTextCfg(**model_cfg["text_cfg"]))
        tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=cfg.max_length)  # BPE ships in the wheel
        return OpenClipTowers(cfg.name, clip, tokenizer, model_cfg, _default_preprocess(image_size))
    try:
        clip, model_cfg = _load_pretrained(cfg.name)
        tokenizer = open_clip.get_tokenizer(cfg.name.replace("open_clip:", "").split(":")[0]
                                            if cfg.name.startswith("open_clip:") else cfg.name)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - hub, network and file errors differ by library version; one message
        raise UserError(f"clip.model.towers.name: '{cfg.name}' could not be loaded offline "
                        f"({err.__class__.__name__}: {str(err)[:200]}); put it in the Hugging Face / open_clip "
                        f"cache, or use 'tiny-open_clip'") from None
    preprocess = dict(getattr(clip.visual, "preprocess_cfg", None) or _default_preprocess(image_size))
    towers = OpenClipTowers(cfg.name, clip, tokenizer, model_cfg, preprocess)
    if towers.image_size != image_size:  # open_clip's ViT does not interpolate its position embeddings
        raise ConfigError(f"data.loader.image_size: {image_size} px, but the open_clip model '{cfg.name}' takes "
                          f"{towers.image_size} px; set data.loader.image_size={towers.image_size}")
    return towers


def load_open_clip_towers(name: str, folder: Path) -> OpenClipTowers:
    """The architecture and tokenizer saved by `OpenClipTowers.save` (random weights: load the state dict)."""
    import open_clip

    config = json.loads((folder / OPEN_CLIP_CONFIG).read_text())
    source = f"local-dir:{folder}"
    # No open_clip weights file in `folder`: open_clip warns "initialized randomly"; the caller loads ours.
    log.info("rebuilding open_clip '%s' from %s; its weights come from the export's model.safetensors", name, folder)
    clip = open_clip.create_model(source, pretrained_text=False)
    return OpenClipTowers(name, clip, open_clip.get_tokenizer(source), config["model_cfg"], config["preprocess_cfg"])
