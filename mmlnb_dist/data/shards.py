"""WebDataset tar shards: collect inputs, split, encode, write atomically and deterministically, verify.

A shard set is a folder with `{train,val,test}-NNNNNN.tar` and a `manifest.json` (format in docs/CONTRACTS.md
and docs/data.md). Each sample is a group of tar members sharing a key: `<key>.jpg|png|...` (the image),
`<key>.cls` (ASCII class index), `<key>.json` (metadata) and optionally `<key>.txt` (description).

We write tars with the standard library's `tarfile` rather than `webdataset.TarWriter`: we need fixed headers
(mtime, uid, gid, names, mode) for byte-identical rebuilds and a temporary-name-then-rename write, and
`tarfile` gives both in a few lines. Nothing here ever unpickles data.

    samples = collect_samples("patches/", descriptions="descriptions.jsonl")
    manifest = build_shards(samples, "shards/mine", BuildConfig())
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..config.data import BuildConfig

FORMAT = "mmlnb-shards/1"
MANIFEST = "manifest.json"
DEFAULT_CLASSES: Tuple[str, ...] = ("UD", "PD", "D")
IMAGE_EXTENSIONS: Tuple[str, ...] = ("jpg", "jpeg", "png", "tif", "tiff", "webp", "bmp")
"""Image member names readers accept, in order of preference (the first present wins)."""

SPLITS: Tuple[str, ...] = ("train", "val", "test")
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_TAR_MODE = 0o644


class ShardError(ValueError):
    """A shard set, shard or build input is missing or malformed; the message names the path."""


@dataclass
class SampleSpec:
    """One input sample for `build_shards`: an image file (or its bytes) and its label."""

    key: str
    """Unique sample key, characters [A-Za-z0-9_-] only (it becomes the tar member stem)."""
    label: str
    """Class name; must be one of the build's classes."""
    image: Union[Path, bytes]
    """Path to the image file, or the encoded image bytes."""
    slide_id: Optional[str] = None
    """Slide (or patient) the patch comes from; splits never put one slide in two splits."""
    description: Optional[str] = None
    """Free-text description stored as the sample's `txt` member."""
    meta: Dict[str, Any] = field(default_factory=dict)
    """Extra provenance stored in the sample's `json` member."""


# --------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------
def read_manifest(shard_dir: Union[str, Path]) -> Dict[str, Any]:
    """Load and sanity-check `manifest.json` of a shard set; `ShardError` naming the path when it is not one."""
    path = Path(shard_dir) / MANIFEST
    if not Path(shard_dir).is_dir():
        raise ShardError(f"shard folder not found: {shard_dir}")
    if not path.is_file():
        raise ShardError(f"{path} not found: {shard_dir} is not a shard set (build one with `mmlnb-dist shards build`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ShardError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ShardError(f"{path}: not a {FORMAT} manifest (format={manifest.get('format') if isinstance(manifest, dict) else None!r})")
    for key in ("classes", "splits"):
        if key not in manifest:
            raise ShardError(f"{path}: missing field '{key}'")
    for name, split in manifest["splits"].items():
        if not isinstance(split, dict) or "shards" not in split or "num_samples" not in split:
            raise ShardError(f"{path}: split '{name}' lacks 'shards' or 'num_samples'")
    return manifest


def shard_paths(shard_dir: Union[str, Path], manifest: Mapping[str, Any], split: str) -> List[Tuple[Path, int]]:
    """`(path, num_samples)` of every shard of `split`, in manifest order."""
    if split not in manifest["splits"]:
        raise ShardError(f"{Path(shard_dir) / MANIFEST}: no split '{split}' (has: {', '.join(manifest['splits'])})")
    return [(Path(shard_dir) / s["file"], int(s["num_samples"])) for s in manifest["splits"][split]["shards"]]


def iter_shard_samples(tar_path: Union[str, Path]) -> Iterator[Dict[str, Any]]:
    """Raw samples of one shard, in file order: `{"__key__": str, "__shard__": str, "jpg": bytes, "cls": bytes, ...}`.

    Members are grouped by the stem before the first dot (keys contain no dots). A truncated or corrupt tar
    raises `ShardError` naming the shard and the last complete key.
    """
    tar_path = Path(tar_path)
    shard = tar_path.name
    current: Optional[Dict[str, Any]] = None
    last_key = None
    try:
        # Streaming mode ("r|"): one sequential pass, no seeking, the same way a remote stream would be read.
        with tarfile.open(tar_path, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                stem, _, ext = member.name.partition(".")
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if current is not None and current["__key__"] != stem:
                    last_key = current["__key__"]
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": stem, "__shard__": shard}
                current[ext] = data
    except FileNotFoundError:
        raise ShardError(f"shard not found: {tar_path}") from None
    except (tarfile.TarError, EOFError, OSError) as err:
        after = f" after key '{last_key}'" if last_key else " at its start"
        raise ShardError(f"shard {shard}: truncated or corrupt tar{after} ({err})") from None
    if current is not None:
        yield current


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------
def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return str(value).encode("utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_tar_shard(path: Union[str, Path], samples: Iterable[Mapping[str, Any]], classes: Sequence[str]) -> Dict[str, Any]:
    """Write raw samples (`{"__key__": ..., "jpg": bytes, "cls": ..., ...}`) to one tar; return its manifest entry.

    Samples are written in the order given, members of a sample sorted by extension. Headers are fixed
    (mtime 0, uid/gid 0, empty owner names, mode 0644), so the same samples give the same bytes. The tar is
    written to `<path>.partial` and renamed when complete: a crash never leaves a finished-looking shard.
    Keys starting with `__` (`__key__`, `__shard__`) are not written.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    counts: Counter = Counter()
    n = 0
    seen = set()
    try:
        with tarfile.open(tmp, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for sample in samples:
                key = sample["__key__"]
                if not _KEY_RE.match(key):
                    raise ShardError(f"{path.name}: invalid sample key {key!r} (allowed: [A-Za-z0-9_-])")
                if key in seen:
                    raise ShardError(f"{path.name}: duplicate sample key {key!r}")
                seen.add(key)
                for ext in sorted(k for k in sample if not k.startswith("__")):
                    data = _as_bytes(sample[ext])
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime, info.mode = len(data), 0, _TAR_MODE
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    tar.addfile(info, io.BytesIO(data))
                cls = int(_as_bytes(sample["cls"]).decode("ascii"))
                counts[classes[cls]] += 1
                n += 1
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {
        "file": path.name,
        "num_samples": n,
        "class_counts": {c: counts.get(c, 0) for c in classes},
        "sha256": _sha256(path),
        "bytes": path.stat().st_size,
    }


def write_manifest(shard_dir: Union[str, Path], manifest: Mapping[str, Any]) -> Path:
    """Write `manifest.json` atomically (temporary name, then rename), with sorted keys for stable bytes."""
    path = Path(shard_dir) / MANIFEST
    tmp = path.with_name(MANIFEST + ".partial")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------------------------
def _allocate(units: List[Tuple[str, int]], fractions: Tuple[float, float], rng: np.random.Generator) -> Dict[str, str]:
    """Assign units (key, size) of one stratum to test/val/train so sample counts approach the fractions.

    Units are shuffled, then laid end to end; a unit goes to the split its midpoint falls into. With units of
    size 1 this gives `round(n * fraction)` samples per split (exact to one sample per stratum).
    """
    test_frac, val_frac = fractions
    order = rng.permutation(len(units))
    total = sum(size for _, size in units)
    test_end, val_end = total * test_frac, total * (test_frac + val_frac)
    out, cum = {}, 0
    for i in order:
        key, size = units[i]
        mid = cum + size / 2.0
        out[key] = "test" if mid < test_end else "val" if mid < val_end else "train"
        cum += size
    return out


def split_samples(samples: Sequence[SampleSpec], build: BuildConfig) -> Dict[str, List[SampleSpec]]:
    """Split samples into train/val/test: stratified by class, grouped by slide when slide ids are present.

    Grouping: each slide is one unit, stratified by its majority label; samples without a slide id are units
    of their own. Deterministic for `build.seed` and the set of samples (input order does not matter).
    Each split is then shuffled with the seed, so shards mix classes and slides.
    """
    samples = sorted(samples, key=lambda s: s.key)
    group = build.group_by_slide and any(s.slide_id is not None for s in samples)
    units: Dict[str, List[SampleSpec]] = defaultdict(list)
    for s in samples:
        units[f"slide:{s.slide_id}" if group and s.slide_id is not None else f"key:{s.key}"].append(s)
    strata: Dict[str, List[Tuple[str, int]]] = defaultdict(list)
    for unit, members in sorted(units.items()):
        label = Counter(m.label for m in members).most_common(1)[0][0] if build.stratify else "*"
        strata[label].append((unit, len(members)))
    rng = np.random.default_rng(build.seed)
    assignment: Dict[str, str] = {}
    for label in sorted(strata):
        assignment.update(_allocate(strata[label], (build.test_fraction, build.val_fraction), rng))
    out: Dict[str, List[SampleSpec]] = {name: [] for name in SPLITS}
    for unit, members in sorted(units.items()):
        out[assignment[unit]].extend(members)
    for name in SPLITS:
        out[name].sort(key=lambda s: s.key)
        order = rng.permutation(len(out[name]))
        out[name] = [out[name][i] for i in order]
    return out


# --------------------------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------------------------
def _encode(spec: SampleSpec, build: BuildConfig) -> Tuple[str, bytes]:
    """Encoded image member `(ext, bytes)`; raises on unreadable images (the caller records them as skipped)."""
    from PIL import Image

    raw = spec.image if isinstance(spec.image, bytes) else Path(spec.image).read_bytes()
    img = Image.open(io.BytesIO(raw))
    if build.image_format == "original":
        img.load()  # decodability check: a corrupt original must not reach the shards
        ext = (Path(spec.image).suffix.lstrip(".").lower() if not isinstance(spec.image, bytes) else "") or (img.format or "png").lower()
        return ext, raw
    size = build.image_size
    # draft() lets the JPEG decoder scale by 1/2, 1/4, 1/8 in the DCT domain when the source is much larger.
    img.draft("RGB", (size, size))
    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    if scale != 1.0:
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    buf = io.BytesIO()
    if build.image_format == "jpeg":
        img.save(buf, format="JPEG", quality=build.jpeg_quality, optimize=False, progressive=False)
        return "jpg", buf.getvalue()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return "png", buf.getvalue()


def _raw_sample(spec: SampleSpec, ext: str, data: bytes, classes: Sequence[str]) -> Dict[str, Any]:
    meta = {"label": spec.label, "slide_id": spec.slide_id,
            "source": spec.image.as_posix() if isinstance(spec.image, Path) else "<bytes>", **spec.meta}
    sample = {"__key__": spec.key, ext: data, "cls": str(classes.index(spec.label)), "json": meta}
    if spec.description is not None:
        sample["txt"] = spec.description
    return sample


# --------------------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(out_dir: Path) -> None:
    """Remove temporary folders left by killed builds of the same output (their process is gone)."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _pid_alive(int(pid)) or int(pid) == os.getpid():
            shutil.rmtree(stale, ignore_errors=True)


def validate_samples(samples: Sequence[SampleSpec], classes: Sequence[str]) -> None:
    """Check keys, labels and image paths before anything is written; `ShardError` naming the first problems."""
    if not samples:
        raise ShardError("no input samples")
    problems: List[str] = []
    seen: Dict[str, SampleSpec] = {}
    for s in samples:
        where = s.image.as_posix() if isinstance(s.image, Path) else s.key
        if not _KEY_RE.match(s.key):
            problems.append(f"{where}: invalid key {s.key!r} (allowed: [A-Za-z0-9_-])")
        elif s.key in seen:
            problems.append(f"{where}: duplicate key {s.key!r}")
        seen[s.key] = s
        if s.label not in classes:
            problems.append(f"{where}: unknown label {s.label!r} (classes: {', '.join(classes)})")
        if isinstance(s.image, Path) and not s.image.is_file():
            problems.append(f"{where}: image file not found")
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ShardError("invalid input samples:\n  " + "\n  ".join(problems[:10]) + more)


def build_shards(
    samples: Sequence[SampleSpec],
    out_dir: Union[str, Path],
    build: BuildConfig,
    classes: Sequence[str] = DEFAULT_CLASSES,
    provenance: Optional[Mapping[str, Any]] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """Split, encode and write a shard set; return its manifest.

    Everything is written into `.<name>.partial-<pid>` beside `out_dir` and renamed to `out_dir` only when
    complete, so an interrupted build never leaves finished-looking output (and the next build removes the
    leftover). An existing `out_dir` is replaced only if it is empty or a shard set. Unreadable images are
    skipped and listed in `manifest["skipped"]`; more than `build.max_skipped_rate` of them fails the build.
    The same samples (in any order) and seed give byte-identical shards and manifest.
    """
    from tqdm import tqdm

    classes = list(classes)
    out_dir = Path(out_dir)
    validate_samples(samples, classes)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file())):
        raise ShardError(f"refusing to replace {out_dir}: it exists and is not a shard set (no {MANIFEST})")
    splits = split_samples(samples, build)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    tmp.mkdir()
    skipped: List[Dict[str, str]] = []
    manifest_splits: Dict[str, Any] = {}
    bar = tqdm(total=len(samples), desc=f"shards {out_dir.name}", unit="img", disable=not progress)
    try:
        # PIL releases the GIL while decoding, resizing and encoding: threads keep all cores busy, and
        # `map` keeps the input order, so the output bytes do not depend on scheduling.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for split in SPLITS:
                specs = splits[split]
                if split == "test" and build.test_fraction == 0.0:
                    continue

                def encoded(chunk: List[SampleSpec]) -> Iterator[Dict[str, Any]]:
                    def work(spec: SampleSpec) -> Tuple[SampleSpec, Optional[Tuple[str, bytes]], str]:
                        try:
                            return spec, _encode(spec, build), ""
                        except Exception as err:  # any decoder error means: this image is unreadable
                            return spec, None, f"{type(err).__name__}: {err}"

                    for spec, enc, reason in pool.map(work, chunk):
                        bar.update(1)
                        if enc is None:
                            skipped.append({"key": spec.key, "source": str(spec.image) if isinstance(spec.image, Path) else "<bytes>", "reason": reason})
                            continue
                        yield _raw_sample(spec, enc[0], enc[1], classes)

                entries = []
                step = build.max_samples_per_shard
                for i, start in enumerate(range(0, len(specs), step)):
                    entry = write_tar_shard(tmp / f"{split}-{i:06d}.tar", encoded(specs[start:start + step]), classes)
                    if entry["num_samples"] == 0:  # every image of this chunk was unreadable
                        (tmp / entry["file"]).unlink()
                        continue
                    entries.append(entry)
                # Renumber when an all-skipped chunk left a gap, so names stay consecutive.
                for i, entry in enumerate(entries):
                    name = f"{split}-{i:06d}.tar"
                    if entry["file"] != name:
                        os.replace(tmp / entry["file"], tmp / name)
                        entry["file"] = name
                manifest_splits[split] = {
                    "num_samples": sum(e["num_samples"] for e in entries),
                    "class_counts": {c: sum(e["class_counts"][c] for e in entries) for c in classes},
                    "shards": entries,
                }
        bar.close()
        rate = len(skipped) / len(samples)
        if rate > build.max_skipped_rate:
            listing = "\n  ".join(f"{s['source']}: {s['reason']}" for s in skipped[:10])
            raise ShardError(f"{len(skipped)} of {len(samples)} input images unreadable ({rate:.1%} > "
                             f"data.build.max_skipped_rate={build.max_skipped_rate}):\n  {listing}")
        group = build.group_by_slide and any(s.slide_id is not None for s in samples)
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
        }
        write_manifest(tmp, manifest)
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


# --------------------------------------------------------------------------------------------------------------
# Collecting inputs (folder of class subfolders, or CSV manifest) + descriptions JSONL
# --------------------------------------------------------------------------------------------------------------
def _key_for(rel: str, taken: Dict[str, str]) -> str:
    stem = rel.rsplit(".", 1)[0]
    key = re.sub(r"[^A-Za-z0-9_-]", "_", stem)
    if key in taken and taken[key] != rel:  # two paths that sanitise to one key: disambiguate stably
        key = f"{key}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
    taken[key] = rel
    return key


def load_descriptions(path: Union[str, Path]) -> Dict[str, str]:
    """Read a descriptions JSONL (`{"file": ..., "description": ...}` per line) into {file: description}."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"descriptions file not found: {path}")
    out: Dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out[str(rec["file"])] = str(rec["description"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ShardError(f"{path}:{n}: expected a JSON object with 'file' and 'description' ({err})") from None
    return out


def _attach_descriptions(samples: List[SampleSpec], rels: List[str], descriptions: Mapping[str, str]) -> None:
    """Match by relative path first, then by file name (when that name is unique among the inputs)."""
    by_name = Counter(Path(r).name for r in rels)
    desc_by_name = {Path(k).name: v for k, v in descriptions.items()}
    for spec, rel in zip(samples, rels):
        name = Path(rel).name
        if rel in descriptions:
            spec.description = descriptions[rel]
        elif by_name[name] == 1 and name in desc_by_name:
            spec.description = desc_by_name[name]


def _read_csv(csv_path: Path, classes: Sequence[str]) -> Tuple[List[SampleSpec], List[str]]:
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ShardError(f"cannot read CSV {csv_path}: {err}") from None
    columns = set(rows[0].keys()) if rows else set()
    path_col = "path" if "path" in columns else "file" if "file" in columns else None
    if path_col is None or "label" not in columns:
        raise ShardError(f"CSV {csv_path} must have columns 'path' (or 'file') and 'label' "
                         f"(optional 'slide_id', 'description'); found: {sorted(columns) or 'no rows'}")
    root = csv_path.parent
    samples, rels, taken = [], [], {}
    for row in rows:
        rel = Path(row[path_col]).as_posix()
        slide = (row.get("slide_id") or "").strip() or None
        desc = row.get("description") or None
        samples.append(SampleSpec(_key_for(rel, taken), row["label"].strip(), root / rel, slide, desc,
                                  {"file": rel}))
        rels.append(rel)
    return samples, rels


def collect_samples(
    input_path: Union[str, Path],
    classes: Sequence[str] = DEFAULT_CLASSES,
    descriptions: Optional[Union[str, Path]] = None,
) -> List[SampleSpec]:
    """Input samples from a folder of class subfolders (`UD/*.png`, ...) or a CSV (path|file, label[, slide_id]).

    A folder that holds a `labels.csv` is read through it (to get slide ids); a `descriptions.jsonl` beside
    the inputs is used when `descriptions` is not given. Errors (missing folder, unknown label folder, empty
    class folder, bad CSV columns) are raised before anything is written.
    """
    input_path = Path(input_path)
    if not input_path.exists():
        raise ShardError(f"input not found: {input_path}")
    if input_path.is_file():
        samples, rels = _read_csv(input_path, classes)
        root = input_path.parent
    elif (input_path / "labels.csv").is_file():
        samples, rels = _read_csv(input_path / "labels.csv", classes)
        root = input_path
    else:
        root = input_path
        samples, rels, taken = [], [], {}
        subdirs = sorted(p for p in input_path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not subdirs:
            raise ShardError(f"{input_path}: no class subfolders (expected {', '.join(f'{c}/' for c in classes)}) and no labels.csv")
        for sub in subdirs:
            if sub.name not in classes:
                raise ShardError(f"{sub}: unknown label folder '{sub.name}' (classes: {', '.join(classes)})")
            files = sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lstrip(".").lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ShardError(f"{sub}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS)} images)")
            for p in files:
                rel = p.relative_to(input_path).as_posix()
                samples.append(SampleSpec(_key_for(rel, taken), sub.name, p, None, None, {"file": rel}))
                rels.append(rel)
    if descriptions is None and (root / "descriptions.jsonl").is_file():
        descriptions = root / "descriptions.jsonl"
    if descriptions is not None:
        _attach_descriptions(samples, rels, load_descriptions(descriptions))
    validate_samples(samples, classes)
    return samples


# --------------------------------------------------------------------------------------------------------------
# Verifying
# --------------------------------------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    """What `verify_shards` found: problems (one line each, naming shard and key) and per-split class counts."""

    problems: List[str]
    counts: Dict[str, Dict[str, int]]
    classes: List[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        head = ["split", *self.classes, "total"]
        rows = [[split, *(str(c.get(k, 0)) for k in self.classes), str(sum(c.values()))] for split, c in self.counts.items()]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [head, *rows])


def image_member(sample: Mapping[str, Any]) -> Optional[str]:
    """The sample's image member name: the first of IMAGE_EXTENSIONS present."""
    return next((ext for ext in IMAGE_EXTENSIONS if ext in sample), None)


def verify_shards(shard_dir: Union[str, Path], progress: bool = True) -> VerifyReport:
    """Check every shard against the manifest: file present, bytes, sha256, counts per class, unique keys,
    every image decodable, every `cls` a valid class index matching the `json` label."""
    from PIL import Image
    from tqdm import tqdm

    shard_dir = Path(shard_dir)
    manifest = read_manifest(shard_dir)
    classes = list(manifest["classes"])
    problems: List[str] = []
    counts: Dict[str, Dict[str, int]] = {}
    keys: Dict[str, str] = {}
    listed = set()
    total = sum(int(s["num_samples"]) for split in manifest["splits"].values() for s in split["shards"])
    bar = tqdm(total=total, desc="verify", unit="sample", disable=not progress)
    ordered = sorted(manifest["splits"].items(), key=lambda kv: (SPLITS + (kv[0],)).index(kv[0]))
    for split, info in ordered:
        split_counts: Counter = Counter()
        for entry in info["shards"]:
            path = shard_dir / entry["file"]
            listed.add(entry["file"])
            if not path.is_file():
                problems.append(f"{entry['file']}: missing")
                continue
            if path.stat().st_size != entry.get("bytes"):
                problems.append(f"{entry['file']}: {path.stat().st_size} bytes, manifest says {entry.get('bytes')}")
            if _sha256(path) != entry.get("sha256"):
                problems.append(f"{entry['file']}: sha256 differs from the manifest")
            shard_counts: Counter = Counter()
            n = 0
            try:
                for sample in iter_shard_samples(path):
                    n += 1
                    bar.update(1)
                    key = sample["__key__"]
                    where = f"{entry['file']} key {key}"
                    if key in keys:
                        problems.append(f"{where}: duplicate key (also in {keys[key]})")
                    keys[key] = entry["file"]
                    ext = image_member(sample)
                    if ext is None:
                        problems.append(f"{where}: no image member")
                    else:
                        try:
                            Image.open(io.BytesIO(sample[ext])).load()
                        except Exception as err:
                            problems.append(f"{where}: image not decodable ({type(err).__name__}: {err})")
                    try:
                        cls = int(sample["cls"].decode("ascii"))
                        label = classes[cls] if 0 <= cls < len(classes) else None
                    except (KeyError, ValueError, UnicodeDecodeError):
                        label = None
                    if label is None:
                        problems.append(f"{where}: missing or invalid cls {sample.get('cls')!r}")
                        continue
                    try:
                        meta_label = json.loads(sample["json"]).get("label") if "json" in sample else label
                    except (ValueError, AttributeError):
                        meta_label = None
                        problems.append(f"{where}: json member is not a JSON object")
                    if meta_label is not None and meta_label != label:
                        problems.append(f"{where}: cls says {label} but json label says {meta_label}")
                    shard_counts[label] += 1
            except ShardError as err:
                problems.append(str(err))
            if n != entry["num_samples"]:
                problems.append(f"{entry['file']}: {n} samples, manifest says {entry['num_samples']}")
            if any(shard_counts.get(c, 0) != entry["class_counts"].get(c, 0) for c in classes):
                problems.append(f"{entry['file']}: class counts {dict(shard_counts)} differ from manifest {entry['class_counts']}")
            split_counts.update(shard_counts)
        if sum(split_counts.values()) != info["num_samples"]:
            problems.append(f"split {split}: {sum(split_counts.values())} valid samples, manifest says {info['num_samples']}")
        counts[split] = {c: split_counts.get(c, 0) for c in classes}
    bar.close()
    for extra in sorted(p.name for p in shard_dir.glob("*.tar")):
        if extra not in listed:
            problems.append(f"{extra}: tar file not listed in the manifest")
    return VerifyReport(problems, counts, classes)
