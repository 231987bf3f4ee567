"""What every image encoder is (`ImageEncoder`: a module with `out_dim` and the input it expects), the encoder
error, and the safe weights-file reader; shared by the registries in encoders.py and pathology.py."""
from __future__ import annotations

import pickle
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""The normalisation of the ImageNet-trained encoders (the default of `ImageEncoder.mean` / `.std`)."""


class EncoderError(UserError, ValueError):
    """An encoder cannot be built (unknown name, weights missing offline, bad weights file). The settings it tells
    the user to change have the models' own names (`model.image_encoder.pretrained`, `model.text_encoder.name`);
    a caller that knows its config's spelling renames them (`settings_named`)."""


@contextmanager
def settings_named(names: Mapping[str, str]) -> Iterator[None]:
    """Raise the `EncoderError`s inside with the settings they name spelled as the caller's config spells them:
    `names` maps the models' names (a whole key, or a prefix such as `model.image_encoder`) to the caller's
    (`fusion.model.image_encoder`). A name already spelled out (preceded by a word or a dot) is left alone."""
    try:
        yield
    except EncoderError as err:
        text = str(err)
        for generic in sorted(names, key=len, reverse=True):  # whole keys before the prefixes they start with
            text = re.sub(rf"(?<![\w.]){re.escape(generic)}(?!\w)", lambda _, key=names[generic]: key, text)
        raise EncoderError(text) from None


class ImageEncoder(nn.Module):
    """A backbone followed by global average pooling: image -> one vector of `out_dim` features.

    The encoder declares the input it was trained on: `mean` / `std` (per channel, for images scaled to [0, 1])
    and `input_size` (pixels per side; None when any size works). Recipes read these to build their
    preprocessing (`normalize` applies them to a [0, 1] batch). `licence` and `source` say where the weights come
    from; `weights_digest` (set by `build_image_encoder` when weights were loaded) identifies them."""

    def __init__(self, name: str, body: nn.Module, out_dim: int, pool: bool = True, *,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 input_size: Optional[int] = None, licence: str = "", source: str = ""):
        super().__init__()
        self.name = name
        self.body = body
        self.out_dim = out_dim
        self.pool = pool
        self.mean: Tuple[float, ...] = tuple(float(m) for m in mean)
        self.std: Tuple[float, ...] = tuple(float(s) for s in std)
        self.input_size = input_size
        self.licence = licence
        self.source = source or name
        self.weights_digest: Optional[str] = None

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """`float[B,3,H,W]` in [0, 1] -> the normalised input this encoder expects."""
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        return (images - mean) / std

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.body(pixel_values)
        if self.pool:
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x


def load_state_file(path: str | Path) -> Dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch file (loaded with weights_only=True: no pickles run)."""
    path = Path(path)
    if not path.is_file():
        raise EncoderError(f"weights file not found: {path}{' (a folder, not a file)' if path.is_dir() else ''}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's refusal of a pickled payload says why itself
        raise
    except Exception as err:  # noqa: BLE001 - a text file, a cut copy: whatever safetensors / torch.load raise
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise EncoderError(f"{path} cannot be read as a weights file ({type(err).__name__}: {reason}); give a "
                           f".safetensors or torch state-dict file (or a model folder, for a pathology "
                           f"model)") from None


def load_weights(module: nn.Module, state: Mapping[str, torch.Tensor], path: Any, name: str,
                 which: str = "") -> List[str]:
    """Load `state` (read from `path`) into `name`'s `module`, not strictly; an EncoderError when weights of
    `name` are missing or have other shapes (another model's checkpoint); returns the unused keys. `which`: the
    checkpoint it should be, for the message."""
    hint = f"; is it the {which} checkpoint?" if which else ""
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that differ under the same key names
        lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
        raise EncoderError(f"{path} does not fit '{name}' ({len(lines)} weights of other shapes, e.g. "
                           f"{lines[0] if lines else str(err).splitlines()[0]}){hint}") from None
    if missing:
        raise EncoderError(f"{path} lacks {len(missing)} weights of '{name}', e.g. {missing[:3]}{hint}")
    return list(unexpected)


def hub_download_hint(repo: str) -> str:
    """How to get a Hugging Face model onto a machine that lacks it (the tail of every "not available" error)."""
    from huggingface_hub import constants

    return (f"download it into the Hugging Face cache {constants.HF_HUB_CACHE} (on a machine with internet: "
            f"`huggingface-cli download {repo}`; then HF_HUB_OFFLINE=1 works)")


def require_hub_file(repo: str, filename: str, error: Callable[[OSError], Exception]) -> None:
    """Fetch one small file of `repo` (a Hub id or a local folder) from the cache, or the network when there is one,
    as loading the model would first; raise `error(err)` when that fails (not cached and no network, gated
    without a login, no such repository or folder)."""
    from transformers.utils import cached_file

    try:
        cached_file(repo, filename)
    except OSError as err:
        raise error(err) from None
