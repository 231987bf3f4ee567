"""`predict`'s inputs: image files, folders of images, shard folders (with manifest.json), single .tar shards or
one sample of a shard (`<tar>:<key>`, as predict names it), given as paths or `file://` URLs, expanded into items
{key, source, path | tar, slide_id, description, written_by; a shard's also true_label and true_labels (a
multi-label sample's set)}. A shard's images are read only when its items are predicted (`with_image_bytes`), so
memory holds one chunk of images, not every input's."""
from __future__ import annotations

import io
import json
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit
from urllib.request import url2pathname

from ..data.images import image_files, image_member, is_slide_file, other_files, read_image
from ..data.text_writer import shard_text_writer
from .errors import PredictError

log = logging.getLogger(__package__)  # "[predict]" on the console, as the rest of predict

TILE_THEM_FIRST = ("predict takes patches; tile {it} first (mmlnb-dist slides tile --slides DIR --labels CSV --out "
                   "shards/NAME), then predict on shards/NAME")
MAX_PATCH_SIDE = 4096
"""Pixels on the longer side above which an input is no patch (pathology tiles run 224-2048 px): a slide saved as
a plain image, which would be predicted as one patch."""


Input = Union[str, Path]
"""An input as the user gave it: a path, a `file://` URL, or a shard sample as `predict` names it, `<tar>:<key>`."""


def _member(given: Input) -> Optional[Tuple[Path, str]]:
    """(shard, sample key) when `given` names no file but a sample of an existing shard (`<tar>:<key>`, the `source`
    of a predictions row or of a `.skipped` line), else None."""
    text = str(given)
    for found in re.finditer(r"\.tar:", text):
        tar = Path(text[:found.start() + 4])
        if tar.is_file() and found.end() < len(text):
            return tar, text[found.end():]
    return None


def _local_path(given: Input) -> Path:
    """The path an input names: itself, the local path of a `file://` URL (`file:///x`, `file://localhost/x`;
    percent-escapes decoded), or for a shard sample (`_member`) its shard."""
    path = Path(given)
    if path.exists():
        return path
    url = urlsplit(str(given))
    if url.scheme == "file" and url.netloc in ("", "localhost"):
        return Path(url2pathname(url.path))
    member = _member(given)
    return member[0] if member else path


def _is_shard_set(given: Input) -> bool:
    try:
        path = _local_path(given)
        return path.is_dir() and (path / "manifest.json").is_file()
    except OSError:  # (reported by `collect_inputs`)
        return False


def _missing(given: Input) -> str:
    """Why an input that names no file is not read, told for what it looks like (a URL, a Windows path)."""
    text = str(given)
    url = urlsplit(text)
    if url.scheme == "file":
        return "no such file or folder" if url.netloc in ("", "localhost") else (
            f"a file:// URL of another host ({url.netloc}); predict reads this machine's files: give the path as "
            f"this machine sees it")
    if re.match(r"^[A-Za-z]:[\\/]", text):
        return "no such file or folder (a Windows path? give the path as this machine sees it)"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", text):
        return "a URL: predict reads local files and folders; download it first and give its path"
    return "no such file or folder"


def _no_images(folder: Path) -> str:
    """Why a folder without images gives no inputs: its whole-slide images (to tile first), its shard sets (a
    `shards/` folder given for the `shards/NAME` in it: each is an input of its own), or nothing."""
    slides = sum(1 for p in folder.rglob("*") if p.is_file() and is_slide_file(p.name))
    if slides:
        return f"folder holds no images but {slides} whole-slide image(s): {TILE_THEM_FIRST.format(it='them')}"
    sets = sorted(str(m.parent) for m in folder.rglob("manifest.json"))
    if sets:
        return (f"folder holds no images but {len(sets)} shard set(s): give them as inputs ({', '.join(sets[:3])}"
                f"{', ...' if len(sets) > 3 else ''})")
    return "folder holds no images"


def _header_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from the image header, without decoding; None when PIL cannot tell (decoding then says)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # noqa: BLE001 - an unreadable image is reported by the decode that follows
        return None


def _text(value: Any) -> Optional[str]:
    """A sample's slide id or label as text, as a table's (None when absent or empty): an integer id or class index
    0 is falsy and lost its slide or label, and an index beside names crashed the agreement's sorting."""
    return None if value in (None, "") else str(value)


def _shard_items(tar: Path, failed: List[Tuple[str, str]]) -> List[Dict[str, Any]]:
    """A shard's samples as items without their image bytes (`with_image_bytes` reads them when predicted). A shard
    truncated or corrupt (`ShardError`) gives the samples before its cut and a failure naming it: the other shards
    of its set, and its own samples up to the cut, are still predicted (reading stopped at it and lost them)."""
    from ..data.reader import iter_shard_samples
    from ..data.shardset import ShardError

    items: List[Dict[str, Any]] = []
    try:
        for s in iter_shard_samples(tar):
            meta: Any = {}
            if "json" in s:
                try:
                    meta = json.loads(s["json"])
                except ValueError as err:  # (read as {}, it was predicted without its label and slide, unnamed)
                    failed.append((f"{tar}:{s['__key__']}", f"its .json is not valid JSON ({err})"))
                    continue
            if not isinstance(meta, dict):  # (a list): its .get raised for the whole shard, skipping its good samples
                failed.append((f"{tar}:{s['__key__']}", f"its .json is not an object but a {type(meta).__name__}"))
                continue
            labels = meta.get("labels")  # as training reads it (`MultiHotLabel`): a string was joined letter by letter
            names = isinstance(labels, list) and labels and all(isinstance(n, str) for n in labels)
            if labels is not None and not names:
                failed.append((f"{tar}:{s['__key__']}", f"its .json 'labels' is {labels!r}, not a non-empty list of "
                                                         f"label names"))
                continue
            text = s["txt"].decode("utf-8", "replace") if isinstance(s.get("txt"), bytes) else (s.get("txt") or "")
            items.append({"key": s["__key__"], "sample_key": s["__key__"], "source": f"{tar}:{s['__key__']}",
                          "tar": tar, "slide_id": _text(meta.get("slide_id")), "description": text,
                          "true_label": _text(meta.get("label")), "true_labels": meta.get("labels")})
    except ShardError as err:
        failed.append((str(tar), f"{err}; its {len(items)} sample(s) before that are predicted, the rest are not"))
    return items


def _set_writer(tar: Path) -> Any:
    """Who wrote the descriptions of a shard given on its own: its shard set's writer (`shard_text_writer` of the
    manifest beside it, when that lists it), as for the set given whole; else None (unknown: not judged)."""
    try:
        manifest = json.loads((tar.parent / "manifest.json").read_text())
        listed = {s["file"] for info in manifest["splits"].values() for s in info.get("shards", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return shard_text_writer(manifest) if tar.name in listed else None


def with_image_bytes(items: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    """The items in order, each shard sample with its image bytes (`data`), every shard read once: only what is
    being predicted is held, not every image of the inputs."""
    from ..data.reader import iter_shard_samples
    from ..data.shardset import ShardError

    i = 0
    while i < len(items):
        tar, j = items[i].get("tar"), i + 1
        if tar is None:
            yield items[i]
            i += 1
            continue
        while j < len(items) and items[j].get("tar") == tar:
            j += 1
        wanted = {it["sample_key"]: it for it in items[i:j]}  # (`key` may be the source: see `_unique_keys`)
        try:
            for s in iter_shard_samples(tar):
                it = wanted.pop(s["__key__"], None)
                if it is not None:
                    ext = image_member(s)
                    it["data"] = s[ext] if ext else None
                    yield it
        except ShardError as err:  # cut short (listed up to its cut): what it held before is predicted
            for it in wanted.values():
                it["unreadable"] = str(err)
        yield from wanted.values()  # (gone from the shard since it was listed: reported as unreadable)
        i = j


def shard_sets_read(paths: Sequence[Path]) -> List[Path]:
    """The shard set folders the inputs read from: a shard set given, or the one a given `.tar` belongs to."""
    found = []
    for given in paths:
        try:  # (an input that cannot even be looked at, e.g. a name too long, is reported by `collect_inputs`)
            path = _local_path(given)
            folder = path if path.is_dir() else path.parent if path.suffix == ".tar" else None
            if folder is not None and (folder / "manifest.json").is_file() and folder.resolve() not in found:
                found.append(folder.resolve())
        except OSError:
            continue
    return found


def collect_inputs(paths: Sequence[Input],
                   split: Optional[str] = None) -> Tuple[List[Dict[str, Any]], List[Tuple[str, str]]]:
    """Expand inputs (`Input`) into items {key, source, data|path, slide_id, description}; returns (items,
    failures), a failure naming its input as given."""
    items: List[Dict[str, Any]] = []
    failed: List[Tuple[str, str]] = []
    for given in paths:
        try:
            path, member = _local_path(given), _member(given)
            if member is not None and path == member[0]:
                writer, (tar, key), cut = _set_writer(member[0]), member, []
                found = [{**it, "written_by": writer} for it in _shard_items(tar, cut) if it["sample_key"] == key]
                items.extend(found)
                # the reason: a cut before the sample (named by the shard), or the sample's own bad metadata; one
                # after it, or another sample's bad metadata, does not concern it
                why = [w for source, w in cut if source in (str(tar), f"{tar}:{key}")]
                if not found:
                    failed.append((str(given), why[0] if why else f"no sample '{key}' in the shard {tar}"))
            elif not path.exists():
                failed.append((str(given), _missing(given)))
            elif path.is_dir() and (path / "manifest.json").is_file():
                from ..data.shardset import ShardSet

                manifest = ShardSet.open(path).manifest
                writer = shard_text_writer(manifest)
                have = [name for name, info in manifest["splits"].items() if info.get("shards")]
                if split and split not in have:  # else an empty predictions file, and exit code 0
                    failed.append((str(given), f"the shard set has no '{split}' split (its splits: "
                                              f"{', '.join(have)})"))
                    continue
                for name, info in manifest["splits"].items():
                    if split and name != split:
                        continue
                    for shard in info.get("shards", []):
                        items.extend({**it, "written_by": writer}
                                     for it in _shard_items(path / shard["file"], failed))
            elif path.suffix == ".tar":
                writer = _set_writer(path)
                items.extend({**it, "written_by": writer} for it in _shard_items(path, failed))
            elif path.is_dir():
                files = image_files(path)
                others = other_files(path, files) if files else []  # (without images: a failure says why)
                if others:  # a .gif patch, a note: named, not dropped without a word
                    log.warning("%s: %d file%s not predicted, not an image (%s%s)", given, len(others),
                                "s" if len(others) > 1 else "", ", ".join(others[:3]),
                                ", ..." if len(others) > 3 else "")
                if not files:
                    failed.append((str(given), _no_images(path)))
                items.extend({"key": str(f.relative_to(path).with_suffix("")).replace("/", "_"), "source": str(f),
                              "path": f, "named": f.relative_to(path).as_posix()} for f in files)
            elif is_slide_file(path.name):
                failed.append((str(given), f"a whole-slide image: {TILE_THEM_FIRST.format(it='it')}"))
            else:
                items.append({"key": path.stem, "source": str(path), "path": path, "named": path.name})
        except Exception as err:  # noqa: BLE001 - a broken shard must not hide the other inputs
            failed.append((str(given), f"{type(err).__name__}: {err}"))
    # a split of image files would be dropped without a word, and every image predicted
    if split and not any(map(_is_shard_set, paths)):
        raise PredictError(f"--split {split} chooses a split of shard sets, and none of the inputs is one "
                           f"({', '.join(map(str, paths))}); leave it out, or give the shard set folder")
    items = _unique_keys(_once(items))
    for it in items:  # what is written of an input: its key and source (the path it is read from is kept as it is)
        it["key"], it["source"] = shown(str(it["key"])), shown(str(it["source"]))
    # once each, as `_once` predicts each input once: a shard named twice listed (and counted) its failures twice
    return items, [(shown(source), shown(why)) for source, why in dict.fromkeys(failed)]


def shown(text: str) -> str:
    """`text` as UTF-8 can hold it: a file name's bytes that are not UTF-8 (read by Python as lone surrogates, which
    pandas, the CSV and the JSON writers cannot encode) escaped, `caf\\xe9.png`; any other text as it is."""
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _unique_keys(items: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each item its own `key`, the id of its output row: a key no other input has stays as it is (a folder's
    `sub1/p1.png` -> `sub1_p1`, a file's stem, a shard sample's key); inputs that would share one (`sub1/p1.png`
    and `sub1_p1.png`, `plain.png` and `plain.jpg`) are keyed by their path in the folder with its extension, and
    if that is still shared (`p1.png` of two folders given) by their source (the path as given; `<tar>:<key>`)."""
    def shared(keys: List[str]) -> set:
        return {key for key, n in Counter(keys).items() if n > 1}

    keys = [str(it["key"]) for it in items]
    clash = shared(keys)
    keys = [it.get("named", key) if key in clash else key for it, key in zip(items, keys)]
    clash = shared(keys)
    keys = [it["source"] if key in clash else key for it, key in zip(items, keys)]
    renamed = sum(key != it["key"] for it, key in zip(items, keys))
    if renamed:
        log.info("%d input(s) would share a key with another (e.g. %s): keyed by their path instead", renamed,
                 next(it["source"] for it, key in zip(items, keys) if key != it["key"]))
    for it, key in zip(items, keys):
        it.pop("named", None)
        it["key"] = key
    return items


def _once(items: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each file and each shard sample once, at its first mention: a file named twice, or also inside a folder
    given, would be predicted as often and counted as often in its slide's aggregate. A file is the same by its
    absolute path, links not followed: a link under another name (`B/p9.png` -> `A/p1.png`) is an input of its
    own, with its own key and slide, not a repeat to drop."""
    seen, kept = set(), []
    for it in items:
        where = (("tar", Path(it["tar"]).resolve(), it["sample_key"]) if "tar" in it
                 else ("file", os.path.abspath(it["path"])))  # (abspath: `sub/../c.png` is still `c.png`)
        if where not in seen:
            seen.add(where)
            kept.append(it)
    if len(kept) < len(items):
        log.info("%d input(s) named more than once (the same file or shard sample): each predicted once",
                 len(items) - len(kept))
    return kept


def require_descriptions(model_uri: str, items: List[Dict[str, Any]], table: Optional[Path] = None) -> None:
    """A model that reads a description with each image would score images without one on empty text: refused,
    unless none of those images can be read (they are reported as unreadable, the others predicted). `table`: the
    `--descriptions` file given, named as lacking their rows."""
    missing = [it for it in items if not str(it.get("description") or "").strip()]
    first = next((it for it in missing if readable(it)), None)
    if first is not None and table is not None:
        raise PredictError(f"{model_uri} reads a description with each image, and {len(missing)} of {len(items)} "
                           f"have none (first: {first['source']}); nothing was predicted. {table} has no "
                           f"description for them: add their rows (matched by path), or leave them out")
    if first is not None:
        raise PredictError(f"{model_uri} reads a description with each image, and {len(missing)} of {len(items)} "
                           f"have none (first: {first['source']}); nothing was predicted. Give --descriptions FILE "
                           f"(path,description), --vlm MODEL [--adapter DIR] to write them as training did (the "
                           f"pipeline's report prints that line), or a shard set that carries them (`describe`'s "
                           f"output)")


def image_bytes(item: Dict[str, Any]) -> bytes:
    """An item's encoded image: its bytes (a shard sample's, once read), else its file's."""
    if item.get("data") is not None:
        return item["data"]
    if item.get("unreadable"):
        raise ValueError(item["unreadable"])
    if item.get("path") is None:
        raise ValueError("no image in the shard sample")
    return Path(item["path"]).read_bytes()


def readable(item: Dict[str, Any]) -> bool:
    try:  # a shard sample's image is checked when it is predicted
        return item.get("tar") is not None or read_image(image_bytes(item)) is not None
    except (ValueError, OSError):
        return False


def decoded(chunk: List[Dict[str, Any]], failed: List[Tuple[str, str]]) -> Tuple[List[Dict[str, Any]], List[Any]]:
    """The chunk's items whose image decodes, with their images; the others (and images larger than any patch,
    checked from their header before decoding) are added to `failed`."""
    good, images = [], []
    for it in chunk:
        try:
            data = image_bytes(it)
            size = _header_size(data)
            if size and max(size) > MAX_PATCH_SIDE:
                failed.append((it["source"], f"an image of {size[0]} x {size[1]} px, larger than any patch: a "
                               f"whole-slide image? {TILE_THEM_FIRST.format(it='it')}"))
                continue
            images.append(read_image(data))
            it["data"] = data
            good.append(it)
        except (ValueError, OSError) as err:
            failed.append((it["source"], str(err)))
    return good, images


