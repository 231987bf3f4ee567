"""Building a shard set: validate the inputs, split them, encode the images, write the shards and the manifest.

    samples = collect_samples("patches/", classes=["UD", "PD", "D"], descriptions="descriptions.jsonl")
    manifest = build_shards(samples, "shards/mine", BuildConfig(), classes=["UD", "PD", "D"])

The build holds a `FolderLock` on the output for its whole life (a second build, tiling or describe into the
same folder stops at once). Everything is written into a hidden temporary folder inside the output and moved
into place when complete, manifest last. The same samples (in any order) and seed give byte-identical shards
and manifest. A stopped build keeps its finished shards there, and the same command resumes from them
(`build_journal`).
"""
from __future__ import annotations

import io
import logging
import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ..core.progress import progress_bar
from ..core.runlock import HOLDER_FILE, LOCK_FILE, FolderLock, is_lock_file, pid_alive
from .build_journal import PARTIAL_PREFIX, drop_records, finished_chunk, job_digest, partial_dir, record_chunk
from .config import BuildConfig
from .duplicates import DuplicateFinder, image_digest, warn_duplicates
from .shardset import FORMAT, MANIFEST, SPLITS, ShardError
from .split import is_grouped, is_multilabel, split_samples
from .writer import KEY_RE, write_manifest, write_tar_shard

log = logging.getLogger(__name__)


@dataclass
class SampleSpec:
    """One input sample for `build_shards`: an image file (or its bytes) and its label."""

    key: str
    """Unique sample key, characters [A-Za-z0-9_-] only (it becomes the tar member stem)."""
    label: str
    """Class name; must be one of the build's classes (multi-label samples: the first of their labels)."""
    image: Union[Path, bytes]
    """Path to the image file, or the encoded image bytes."""
    slide_id: Optional[str] = None
    """Slide (or patient) the patch comes from; splits never put one slide in two splits."""
    description: Optional[str] = None
    """Free-text description stored as the sample's `txt` member."""
    meta: Dict[str, Any] = field(default_factory=dict)
    """Extra provenance stored in the sample's `json` member. A multi-label sample carries its label set here as
    `"labels": [names of the classes]`; the build adds `"multi_hot": [0/1 per class]` beside it."""


def _encode(spec: SampleSpec, build: BuildConfig) -> Tuple[str, bytes]:
    """Encoded image member `(ext, bytes)`; raises on unreadable images (the caller records them as skipped)."""
    from PIL import Image

    from .images import decode_opened, square_crop, to_rgb

    raw = spec.image if isinstance(spec.image, bytes) else Path(spec.image).read_bytes()
    if not raw:  # PIL says only "cannot identify image file"
        raise ValueError("the file is empty (0 bytes): an interrupted copy or export? copy it again")
    img = Image.open(io.BytesIO(raw))
    if build.image_format == "original":
        to_rgb(img)  # decodability check, as training decodes: a corrupt or 32-bit float original must not reach
        # the shards (PIL opens a float TIFF; its first training step failed on it)
        ext = ((Path(spec.image).suffix.lstrip(".").lower() if not isinstance(spec.image, bytes) else "")
               or (img.format or "png").lower())
        return ext, raw
    size, source_size = build.image_size, img.size  # (before the decoder's DCT scaling shrinks it)
    # as training decodes (DCT-scaled JPEG, EXIF orientation applied: a camera's JPEG says "turn me")
    img = square_crop(decode_opened(img, size), size, Image.BICUBIC)
    buf = io.BytesIO()
    if build.image_format == "jpeg":
        img.save(buf, format="JPEG", quality=build.jpeg_quality, optimize=False, progressive=False)
        return _Encoded("jpg", buf.getvalue(), source_size)
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return _Encoded("png", buf.getvalue(), source_size)


class _Encoded(tuple):
    """`(ext, bytes)` of an encoded image, with `source_size`, the (width, height) it was decoded at."""

    def __new__(cls, ext: str, data: bytes, source_size: Tuple[int, int]):
        new = super().__new__(cls, (ext, data))
        new.source_size = source_size
        return new


def _warn_upscaled(small: List[Tuple[str, Tuple[int, int]]], total: int, size: int) -> None:
    """One warning for the images smaller than `size` on their short side (upscaled to it: blurry samples)."""
    if not small:
        return
    w, h = min((wh for _, wh in small), key=lambda wh: (min(wh), wh))
    names = ", ".join(sorted(source for source, _ in small)[:5]) + (", ..." if len(small) > 5 else "")
    log.warning("%d of %d images are smaller than data.build.image_size=%d on their short side and were upscaled "
                "to it (blurry samples; smallest %dx%d px; use larger patches (slides tile: a larger "
                "slides.tile_size), or a smaller data.build.image_size): %s", len(small), total, size, w, h, names)


def _raw_sample(spec: SampleSpec, ext: str, data: bytes, classes: Sequence[str]) -> Dict[str, Any]:
    meta = {"label": spec.label, "slide_id": spec.slide_id,
            "source": spec.image.as_posix() if isinstance(spec.image, Path) else "<bytes>", **spec.meta}
    if isinstance(spec.meta.get("labels"), list):  # multi-label: names in class order and the multi-hot vector
        on = set(spec.meta["labels"])
        meta["labels"] = [c for c in classes if c in on]
        meta["multi_hot"] = [int(c in on) for c in classes]
    sample = {"__key__": spec.key, ext: data, "cls": str(classes.index(spec.label)), "json": meta}
    if spec.description is not None:
        sample["txt"] = spec.description
    return sample


INCOMPLETE = ".incomplete"
"""Marker of an output whose old shards were being replaced when the build stopped: safe to replace again."""


def _clean_stale(out_dir: Path, keep: Optional[Path] = None) -> None:
    """Remove temporary folders left by stopped builds of the same output, except `keep` (this job's own, which it
    resumes from): inside the output (we hold its lock, so no other build is writing) and, from older versions,
    beside it."""
    for stale in out_dir.glob(PARTIAL_PREFIX + "*"):
        if keep is None or stale.name != keep.name:
            shutil.rmtree(stale, ignore_errors=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not pid_alive(int(pid)) or int(pid) == os.getpid():
            shutil.rmtree(stale, ignore_errors=True)


def _user_entries(out_dir: Path) -> List[Path]:
    """What is in the output besides our lock and temporary files."""
    if not out_dir.is_dir():
        return []
    return [p for p in out_dir.iterdir()
            if not is_lock_file(p.name) and p.name != INCOMPLETE and not p.name.startswith(PARTIAL_PREFIX)]


def check_replaceable(out_dir: Path) -> None:
    """Refuse (`ShardError`) an output a shard set may not replace: a file, or a folder of other files (no
    manifest, no unfinished build of ours). Commands that work long before they build call it first."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ShardError(f"refusing to replace {out_dir}: it is a file, not a shard set folder")
    others = sorted(p.name for p in _user_entries(out_dir))
    if others and not (out_dir / MANIFEST).is_file() and not (out_dir / INCOMPLETE).exists():
        raise ShardError(f"refusing to replace {out_dir}: it holds other files ({', '.join(others[:3])}"
                         f"{', ...' if len(others) > 3 else ''}) and is not a shard set (no {MANIFEST}): the shard "
                         f"set would replace them; give a new or empty folder")


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Replace the output's content with `tmp`'s. The manifest goes first and comes back last, so a build
    stopped in between leaves no finished-looking output (and the marker lets the next build replace it)."""
    (out_dir / INCOMPLETE).write_text("")
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for old in _user_entries(out_dir):
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    for new in sorted(tmp.iterdir(), key=lambda p: p.name == MANIFEST):
        os.replace(new, out_dir / new.name)
    tmp.rmdir()
    (out_dir / INCOMPLETE).unlink()


def discard_empty_output(out_dir: Path, lock: FolderLock) -> None:
    """A build that failed before writing anything leaves the output as it found it: the lock files go while the
    lock is still held (a job arriving after that creates fresh ones), then the folder, unless it was an empty
    folder the user had made for the job."""
    if lock.held and out_dir.is_dir() and not _user_entries(out_dir):
        for name in (INCOMPLETE, HOLDER_FILE, LOCK_FILE):
            (out_dir / name).unlink(missing_ok=True)
        if lock.found_empty:
            return
        try:
            out_dir.rmdir()
        except OSError:
            pass


def near_class_hint(name: Any, classes: Sequence[str], what: str) -> str:
    """The "did you mean" of a `name` that is a class in another case or spacing ("" when none is)."""
    near = [c for c in classes if c.strip().lower() == str(name).strip().lower()]
    return f"; did you mean {near[0]!r}? {what} are matched exactly, case included" if near else ""


def validate_samples(samples: Sequence[SampleSpec], classes: Sequence[str]) -> None:
    """Check keys, labels and image paths before anything is written; `ShardError` naming the first problems."""
    if not samples:
        raise ShardError("no input samples")
    problems: List[str] = []
    seen: Dict[str, SampleSpec] = {}
    for s in samples:
        where = s.image.as_posix() if isinstance(s.image, Path) else s.key
        if not KEY_RE.match(s.key):
            problems.append(f"{where}: invalid key {s.key!r} (allowed: [A-Za-z0-9_-])")
        elif s.key in seen and isinstance(s.image, Path) and seen[s.key].image == s.image:
            problems.append(f"{where}: listed twice (labels {seen[s.key].label} and {s.label}); list each image once")
        elif s.key in seen:
            problems.append(f"{where}: duplicate key {s.key!r}")
        seen[s.key] = s
        if s.label not in classes:
            hint = near_class_hint(s.label, classes, "labels")
            problems.append(f"{where}: unknown label {s.label!r} (classes: {', '.join(classes)}){hint}")
        labels = s.meta.get("labels")
        if labels is not None and (not isinstance(labels, list) or not labels or s.label not in labels
                                   or any(label not in classes for label in labels)):
            problems.append(f"{where}: label set {labels!r} must be a non-empty list of classes holding the "
                            f"label {s.label!r} (classes: {', '.join(classes)})")
        if isinstance(s.image, Path) and not s.image.is_file():
            problems.append(f"{where}: image file not found")
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ShardError("invalid input samples:\n  " + "\n  ".join(problems[:10]) + more)


def build_shards(
    samples: Sequence[SampleSpec],
    out_dir: Union[str, Path],
    build: BuildConfig,
    classes: Sequence[str],
    provenance: Optional[Mapping[str, Any]] = None,
    progress: bool = True,
    lock: bool = True,
    dropped_rows: Optional[Sequence[Mapping[str, Any]]] = None,
) -> Dict[str, Any]:
    """Split, encode and write a shard set; return its manifest.

    Holds a `FolderLock` on `out_dir` for the whole build (`lock=False`: the caller holds it, as slide tiling
    does). Everything is written into `<out_dir>/.partial-<pid>` and moved into place only when complete,
    manifest last, so an interrupted build never leaves finished-looking output (and the next build removes
    the leftover). An existing `out_dir` is replaced only if it is empty or a shard set. Unreadable images are
    skipped and listed in `manifest["skipped"]`; more than `build.max_skipped_rate` of them fails the build.
    The same samples (in any order) and seed give byte-identical shards and manifest.

    Multi-label builds (every sample has `meta["labels"]`) are split by iterative stratification and their
    manifest also holds `task: "multilabel"`, `label_counts` (samples holding each label) per shard, per split
    and overall, and `dropped_rows` (input rows the reader dropped, with row number and reason).
    """
    classes = list(classes)
    out_dir = Path(out_dir)
    validate_samples(samples, classes)
    check_replaceable(out_dir)
    present = {s.label for s in samples} | {c for s in samples for c in (s.meta.get("labels") or ())}
    absent = [c for c in classes if c not in present]
    if absent:  # a class of data.classes (or --classes) this data does not have: an output never trained
        log.warning("class%s %s: no sample in %d (classes %s); the model gets an output no sample trains. Drop it "
                    "from --classes / data.classes unless it is meant", "es" if len(absent) > 1 else "",
                    ", ".join(absent), len(samples), ", ".join(classes))
    splits = split_samples(samples, build)
    held = FolderLock(out_dir, "shards build")
    if lock:
        held.acquire()
    try:
        return _build_locked(samples, splits, out_dir, build, classes, provenance, progress, dropped_rows)
    except BaseException:
        discard_empty_output(out_dir, held)
        raise
    finally:
        held.release()


def _build_locked(samples: Sequence[SampleSpec], splits: Dict[str, List[SampleSpec]], out_dir: Path,
                  build: BuildConfig, classes: List[str], provenance: Optional[Mapping[str, Any]],
                  progress: bool, dropped_rows: Optional[Sequence[Mapping[str, Any]]] = None) -> Dict[str, Any]:
    check_replaceable(out_dir)  # again: another job may have written it before we held it
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = partial_dir(out_dir, job_digest(samples, build.model_dump(mode="json"), classes))
    _clean_stale(out_dir, keep=tmp)
    tmp.mkdir(exist_ok=True)
    reused = 0
    skipped: List[Dict[str, str]] = []
    small: List[Tuple[str, Tuple[int, int]]] = []  # images upscaled to image_size (in input order)
    multilabel = is_multilabel(samples)
    label_counts: Counter = Counter()  # of the shard being written (multi-label builds)
    copies = DuplicateFinder()  # one image under two names, across splits or labels
    manifest_splits: Dict[str, Any] = {}
    bar = progress_bar(total=len(samples), desc=f"shards {out_dir.name}", unit="img", enabled=progress)
    try:
        # PIL releases the GIL while decoding, resizing and encoding: threads keep all cores busy, and
        # `map` keeps the input order, so the output bytes do not depend on scheduling.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for split in SPLITS:
                specs = splits[split]
                if split == "test" and build.test_fraction == 0.0:
                    continue

                def encoded(chunk: List[SampleSpec], digests: Dict[str, str]) -> Iterator[Dict[str, Any]]:
                    def work(spec: SampleSpec) -> Tuple[SampleSpec, Optional[Tuple[str, bytes]], str]:
                        try:
                            return spec, _encode(spec, build), ""
                        except Exception as err:  # any decoder error means: this image is unreadable
                            from .images import undecodable

                            # the reason without object addresses: a rebuild writes the same manifest
                            return spec, None, undecodable(err)

                    for spec, enc, reason in pool.map(work, chunk):
                        bar.update(1)
                        if enc is None:
                            source = str(spec.image) if isinstance(spec.image, Path) else "<bytes>"
                            skipped.append({"key": spec.key, "source": source, "reason": reason})
                            continue
                        wh = getattr(enc, "source_size", None)
                        if wh is not None and min(wh) < build.image_size:
                            small.append((str(spec.image) if isinstance(spec.image, Path) else spec.key, wh))
                        if multilabel:
                            label_counts.update(set(spec.meta["labels"]))
                        digests[spec.key] = image_digest(enc[1])
                        yield _raw_sample(spec, enc[0], enc[1], classes)

                entries = []
                step = build.max_samples_per_shard
                for i, start in enumerate(range(0, len(specs), step)):
                    chunk = specs[start:start + step]
                    done = finished_chunk(tmp, split, i)  # by a stopped run of this same job
                    if done is None:
                        before, before_small, digests = len(skipped), len(small), {}
                        label_counts.clear()
                        entry = write_tar_shard(tmp / f"{split}-{i:06d}.tar", encoded(chunk, digests), classes)
                        if multilabel:
                            entry["label_counts"] = {c: label_counts.get(c, 0) for c in classes}
                        if entry["num_samples"] == 0:  # every image of this chunk was unreadable
                            (tmp / entry["file"]).unlink()
                            entry = None
                        record_chunk(tmp, split, i, entry, skipped[before:], digests, small[before_small:])
                    else:
                        entry, digests = done["entry"], done.get("digests", {})
                        skipped.extend(done["skipped"])
                        small.extend((name, tuple(wh)) for name, wh in done.get("upscaled", ()))
                        reused += len(chunk)
                        bar.update(len(chunk))
                    if entry is not None:
                        entries.append(entry)
                    for spec in chunk:
                        if spec.key in digests:
                            copies.add(digests[spec.key], split, spec.key, spec.label)
                manifest_splits[split] = {
                    "num_samples": sum(e["num_samples"] for e in entries),
                    "class_counts": {c: sum(e["class_counts"][c] for e in entries) for c in classes},
                    "shards": entries,
                }
                if multilabel:
                    manifest_splits[split]["label_counts"] = {
                        c: sum(e["label_counts"][c] for e in entries) for c in classes}
        bar.close()
        if reused:
            log.info("resumed: %d of %d images were in shards the stopped build had finished", reused, len(samples))
        _renumber(tmp, manifest_splits)
        drop_records(tmp)
        rate = len(skipped) / len(samples)
        if rate > build.max_skipped_rate:
            listing = "\n  ".join(f"{s['source']}: {s['reason']}" for s in skipped[:10])
            raise ShardError(f"{len(skipped)} of {len(samples)} input images unreadable ({rate:.1%} > "
                             f"data.build.max_skipped_rate={build.max_skipped_rate}):\n  {listing}")
        group = is_grouped(samples, build)  # (the effective setting, as the split used it)
        manifest = {
            "format": FORMAT,
            "classes": classes,
            "splits": manifest_splits,
            "split": {"seed": build.seed, "val_fraction": build.val_fraction, "test_fraction": build.test_fraction,
                      "stratify": build.stratify, "group_by_slide": group},
            "build_options": build.model_dump(mode="json"),
            "has_descriptions": any(s.description is not None for s in samples),
            "provenance": dict(provenance or {}),
            "skipped": sorted(skipped, key=lambda s: s["key"]),
            "duplicates": copies.report(multilabel),
        }
        if multilabel:
            manifest["task"] = "multilabel"
            manifest["split"]["stratify"] = "iterative" if build.stratify else False
            manifest["label_counts"] = {c: sum(info["label_counts"][c] for info in manifest_splits.values())
                                        for c in classes}
            manifest["dropped_rows"] = [dict(d) for d in dropped_rows or ()]
        write_manifest(tmp, manifest)
        _move_into_place(tmp, out_dir)
        warn_duplicates(manifest["duplicates"], str(out_dir))
        _warn_upscaled(small, len(samples), build.image_size)
    except BaseException:
        bar.close()
        kept = len(list(tmp.glob(".chunk-*.json")))
        if kept:
            log.warning("stopped: %d finished shard(s) kept in %s; the same command resumes from them", kept, tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _renumber(tmp: Path, manifest_splits: Dict[str, Any]) -> None:
    """Consecutive shard names where an all-unreadable chunk left a gap (after every chunk is written, so a
    stopped build's records name the files as they are)."""
    for split, info in manifest_splits.items():
        for i, entry in enumerate(info["shards"]):
            name = f"{split}-{i:06d}.tar"
            if entry["file"] != name:
                os.replace(tmp / entry["file"], tmp / name)
                entry["file"] = name
