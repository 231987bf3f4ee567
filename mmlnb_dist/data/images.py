"""Images in shards: which member holds the image, how its bytes are decoded, and the geometric transform.

One owner for these, used by the shard builder, the verifier, the loader and prediction. Decoding never
unpickles. Augmentation draws from a generator seeded by (seed, epoch, sample key), never from global state,
so a sample gets the same augmentation in the same epoch whichever rank or worker reads it.
"""
from __future__ import annotations

import base64
import io
import os
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: slide tiling and shard builds need none
    import torch

IMAGE_EXTENSIONS: Tuple[str, ...] = ("jpg", "jpeg", "png", "tif", "tiff", "webp", "bmp")
"""Image member names (and file suffixes) accepted, in order of preference: the first present wins."""


def image_member(sample: Mapping[str, Any]) -> Optional[str]:
    """The sample's image member name: the first of IMAGE_EXTENSIONS present."""
    return next((ext for ext in IMAGE_EXTENSIONS if ext in sample), None)


SLIDE_EXTENSIONS = (".svs", ".ndpi", ".mrxs", ".tif", ".tiff", ".vms", ".vmu", ".scn", ".bif", ".svslide",
                    ".czi", ".dcm")
"""Whole-slide image file suffixes (what `slides tile` reads; a .tif/.tiff may also be a plain image)."""


def is_image_file(name: str) -> bool:
    return name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS if "." in name else False


def image_files(folder: Union[str, Path]) -> List[Path]:
    """The image files under `folder` (any depth), sorted, leaving out hidden files and folders: macOS `._x.png`
    resource forks and `.ipynb_checkpoints/` copies are never patches."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p.name)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def other_files(folder: Union[str, Path], images: Sequence[Path]) -> List[str]:
    """The files under `folder` that `image_files` leaves out for not being images (a .gif or .jp2 patch, a note;
    hidden files are not counted), as paths relative to the folder's parent, sorted: a caller names them rather
    than dropping them without a word."""
    folder, kept = Path(folder), set(images)
    return sorted(p.relative_to(folder.parent).as_posix() for p in folder.rglob("*") if p.is_file()
                  and p not in kept and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def is_slide_file(name: str) -> bool:
    """A whole-slide image by its suffix alone (.svs, .ndpi, ...; not .tif/.tiff, which may be a plain image)."""
    return "." in name and "." + name.rsplit(".", 1)[-1].lower() in SLIDE_EXTENSIONS and not is_image_file(name)


def decode_image(data: bytes, size: Optional[int] = None):
    """Decode image bytes to an RGB PIL image, fully (a truncated file fails here, not later). With `size`,
    JPEG decoding may scale down by a power of two in the DCT domain while staying at least `size` on each
    side (much faster for large images); other formats decode at full size.

    Why PIL with `draft` (benchmarks/jpeg_decode.py, BENCHMARKS.md "JPEG decode"): on real H&E 512 px tiles for
    224 px training, the DCT-scaled decode is 1.5-1.9x PIL's full decode + resize, while
    `torchvision.io.decode_jpeg` (the same libjpeg-turbo) gives identical pixels at PIL's speed and offers no
    DCT scaling. The scaled decode differs from full decode + BOX resize by at most 38 (mean 1.1) on 0-255,
    within JPEG's own rounding (tests/data/test_image_decode.py).

    An EXIF orientation tag (a camera's JPEG kept as it is: `image_format=original`, a served phone photo) is
    applied: the image as displayed, as the shard build re-encodes it."""
    from PIL import Image

    return decode_opened(Image.open(io.BytesIO(data)), size)


def decode_opened(img, size: Optional[int] = None):
    """`decode_image` of an image PIL has opened (not yet decoded): the one decode path of training, serving and
    the shard build."""
    from PIL import ImageOps

    if size is not None:
        img.draft("RGB", (size, size))
    ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of an image with no tag
    return to_rgb(img)


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def composite_on_white(pixels: np.ndarray) -> np.ndarray:
    """uint8 `[H, W, 4]` RGBA over a white background, as uint8 `[H, W, 3]` (RGB input is returned as is). Slide
    readers give (0, 0, 0, 0) outside the scanned area and patch exporters a transparent background outside the
    tissue: glass is white, and black there would be a colour the patch never had."""
    if pixels.shape[-1] == 3:
        return pixels
    rgb, alpha = pixels[..., :3], pixels[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.float32) / 255.0
    return (rgb.astype(np.float32) * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)


def has_transparency(img) -> bool:
    """Whether a PIL image carries alpha or a transparent colour (a palette index, an RGB or grey value)."""
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def to_rgb(img):
    """`img` as 8-bit RGB, the one conversion of decoding, of the shard build and of the tiler's stain reference.
    PIL's `convert("RGB")` clips a 16-bit greyscale image (0..65535) at 255, a white patch, and a 32-bit one to
    black or white, and drops alpha, so a transparent background turns black: a 16-bit image keeps its high byte
    (exactly the 8-bit image it was scaled from), a 32-bit single-channel image, whose 0-255 range is not defined,
    raises ValueError (a skipped sample, an unreadable input), and transparency is composited over white, as the
    tiler composites a slide's (`composite_on_white`)."""
    from PIL import Image

    if has_transparency(img):
        return Image.fromarray(composite_on_white(np.asarray(img.convert("RGBA"))))
    if img.mode in _SIXTEEN_BIT_MODES:
        return Image.fromarray((np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)).convert("RGB")
    if img.mode in ("I", "F"):
        kind = "integer" if img.mode == "I" else "floating-point"
        raise ValueError(f"a 32-bit {kind} single-channel image (PIL mode {img.mode}) has no defined 0-255 range; "
                         f"save it as an 8- or 16-bit image")
    return img.convert("RGB")


_OBJECT_ADDRESS = re.compile(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>")


def decoder_error(err: BaseException) -> str:
    """`Type: message` of a decoder's error without object addresses (PIL names the buffer `<_io.BytesIO object
    at 0x...>`), so the same bad image reads the same in every run and report."""
    return f"{type(err).__name__}: {_OBJECT_ADDRESS.sub('', str(err))}"


def undecodable(err: BaseException) -> str:
    """Why an image did not decode, for ledgers and reports (`decoder_error`)."""
    return f"image not decodable ({decoder_error(err)})"


def sample_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The augmentation generator of one sample in one epoch."""
    return np.random.default_rng([seed, epoch, zlib.crc32(key.encode("utf-8"))])


def square_crop(img, size: int, resample: int):
    """The PIL image with its shorter side resized to `size`, centre-cropped to `size` x `size`. An elongated image
    (a 1 x 20,000 strip) has only its centre square resampled (the same sampling, within a grey level): resized
    whole first, that strip would be 256 x 5,120,000 pixels. Others are resized whole, then cropped."""
    w, h = img.size
    scale = size / min(w, h)
    w2, h2 = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (w2 - size) // 2, (h2 - size) // 2
    if max(w2, h2) > 8 * size:
        sx, sy = w2 / w, h2 / h
        return img.resize((size, size), resample, box=(left / sx, top / sy, (left + size) / sx, (top + size) / sy))
    if scale != 1.0:
        img = img.resize((w2, h2), resample)
    return img.crop((left, top, left + size, top + size))


class ImageTransform:
    """Resize the shorter side to `image_size`, centre-crop square, optionally flip/rotate (dihedral group).

    `to_array` gives uint8 `[S, S, 3]` (what loader workers ship); `normalise_batch` turns a uint8 batch into
    float32 `[B, 3, S, S]` with the mean and std the model expects (given by the recipe).
    """

    def __init__(self, image_size: int, augment: bool = False, mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        import torch  # here, not at the top: slide tiling and shard builds import this module and need no torch

        self.image_size = image_size
        self.augment = augment
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add: 2 passes over the float batch instead of 4, which on a
        # busy 2-core machine raised the loader from 268 to 381 samples/s (BENCHMARKS.md "Loader against peers")
        self.scale = 1.0 / (255.0 * self.std)
        self.shift = -self.mean / self.std

    def to_array(self, img, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """Geometric part: PIL image -> uint8 `[S, S, 3]` (resized, cropped, augmented)."""
        from PIL import Image

        s = self.image_size
        if img.size != (s, s):
            img = square_crop(img, s, Image.BILINEAR)
        arr = np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy needs one
        if self.augment and rng is not None:
            # Histology has no canonical orientation: the 8 dihedral transforms are all label-preserving.
            if rng.random() < 0.5:
                arr = arr[:, ::-1]
            k = int(rng.integers(4))
            if k:
                arr = np.rot90(arr, k)
        return np.ascontiguousarray(arr)

    def normalise_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 `[B, S, S, 3]` -> normalised float32 `[B, 3, S, S]` in one vectorised pass, on the batch's device."""
        import torch

        t = batch.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        if t.device != self.scale.device:
            # Three numbers copied per batch rather than cached here: this object is pickled into the loader's
            # workers every epoch, and a cached accelerator tensor would go with it.
            return t.mul_(self.scale.to(t.device)).add_(self.shift.to(t.device))
        return t.mul_(self.scale).add_(self.shift)

    def __call__(self, img, rng: Optional[np.random.Generator] = None) -> torch.Tensor:
        """One PIL image -> normalised float32 `[3, S, S]` (prediction: no loader involved)."""
        import torch

        return self.normalise_batch(torch.from_numpy(self.to_array(img, rng))[None])[0]


def read_image(value: Any, size: Optional[int] = None):
    """A PIL RGB image from a file path, raw bytes, or base64 text (what a served model receives); raises
    ValueError with the reason. For inputs of prediction, where one unreadable image must not stop the others.

    `size`: the model's input size, decoded as the training loader decodes (`decode_image(data, size)`: a JPEG
    larger than that is DCT-scaled). A model must be served the pixels it was trained on: a full decode + resize
    of the same JPEG differs by up to 38 grey levels, enough to move a small CNN's predictions."""
    import base64
    import binascii
    from pathlib import Path

    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(value, (bytes, bytearray)):
            data = bytes(value)
        elif isinstance(value, str) and len(value) < 4096 and (os.path.isfile(value) or is_image_file(value)):
            data = Path(value).read_bytes()  # an existing file whatever its name; a missing `x.png` is named missing
        elif isinstance(value, str):
            try:
                data = base64.b64decode(value, validate=True)
            except binascii.Error as err:
                shown = value if len(value) <= 200 else value[:200] + "..."
                raise ValueError(f"not a readable image ({decoder_error(err)}): no such file as {shown!r}, and not "
                                 f"base64-encoded image bytes") from None
        else:
            raise ValueError(f"unsupported image value of type {type(value).__name__}")
        return decode_image(data, size)
    except FileNotFoundError:
        raise ValueError(f"file not found: {value}") from None
    except Image.DecompressionBombError as err:  # PIL's size limit (a decompression bomb, or a whole slide)
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(pixels.group(1)):,} pixels, over PIL's limit" if pixels else "over PIL's pixel limit"
        raise ValueError(f"too large to decode ({size}): a whole-slide image? Tile it with `mmlnb-dist slides "
                         f"tile` and predict its patches") from None
    except (UnidentifiedImageError, OSError, SyntaxError, binascii.Error) as err:
        raise ValueError(f"not a readable image ({decoder_error(err)})") from None


class BadRequest(ValueError):
    """A prediction request a served model cannot read (a served model answers it as HTTP 400 with this message)."""


class MissingDescriptions(BadRequest):
    """A request to a model that reads a description with each image has rows without one."""


def read_request(model_input: Any, size: Optional[int] = None, require_text: bool = False) -> Dict[str, List[Any]]:
    """What a served model reads from a prediction request (a DataFrame, or anything pandas turns into one):
    decoded `images` (the required `image` column: file path or base64 bytes; decoded for input size `size` as
    `read_image` does), `texts` (`description`, "" when absent), `keys` and `slide_ids` (None when absent). One
    parser for every recipe's MLflow model. `require_text` (a model that reads the description): rows without one
    raise `MissingDescriptions`, instead of being scored on empty text. Whatever cannot be read raises `BadRequest`
    (its row and key named for an unreadable image)."""
    import pandas as pd

    df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    if "image" not in df.columns:
        raise BadRequest("input needs an 'image' column (file path or base64-encoded image bytes)")

    def column(name: str, default: Any) -> List[Any]:
        if name not in df.columns:
            return [default] * len(df)
        return [default if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in df[name]]

    texts, keys = [str(t) for t in column("description", "")], column("key", None)
    missing = [i for i, t in enumerate(texts) if not t.strip()]
    if require_text and missing:
        first = missing[0]
        raise MissingDescriptions(
            f"this model reads a description with each image, and {len(missing)} of {len(df)} rows have none "
            f"(first: row {first}" + (f", key {keys[first]}" if keys[first] is not None else "") + "); give each "
            "row its 'description' (a row scored on empty text would get a prediction that means nothing)")
    images = []
    for i, value in enumerate(df["image"]):
        try:
            images.append(read_image(value, size))
        except ValueError as err:
            raise BadRequest(f"row {i}" + (f", key {keys[i]}" if keys[i] is not None else "") + f": {err}") from None
    return {"images": images, "texts": texts, "keys": keys, "slide_ids": column("slide_id", None)}


def example_image_b64(size: int) -> str:
    """A plain H&E-pink PNG of `size` px, base64: the input example a served model is logged with."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 120, 180)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()
