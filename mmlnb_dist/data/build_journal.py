"""What makes a stopped shard build resumable: the job's identity and a record of every finished shard.

A build writes into `<out>/.partial-<job>`, where `<job>` is a digest of everything the shards' bytes depend on (the
samples: key, label, image identity, slide, description, meta; the build options; the classes). Each shard is
recorded as `.chunk-<split>-<index>.json` beside it once its tar is complete: its manifest entry (with the tar's
sha256) and the images of that chunk that were unreadable. The same command after a stop reuses every recorded shard
whose tar is still there with the recorded bytes, and encodes only the rest; a build of anything else removes the
folder (`build._clean_stale`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..core.files import replace_text
from .writer import sha256_file

PARTIAL_PREFIX = ".partial-"


def job_digest(samples: Sequence[Any], build_options: Dict[str, Any], classes: Sequence[str]) -> str:
    """16 hex digits naming a build job. An image file counts by path, size and modification time (hashing every
    image would cost as much as a good part of the build); image bytes given directly count by their hash."""
    h = hashlib.sha256(json.dumps({"classes": list(classes), "build": build_options}, sort_keys=True).encode())
    for s in sorted(samples, key=lambda s: s.key):
        if isinstance(s.image, bytes):
            image: Any = hashlib.sha256(s.image).hexdigest()
        else:
            st = Path(s.image).stat()
            image = [str(s.image), st.st_size, st.st_mtime_ns]
        h.update(json.dumps([s.key, s.label, image, s.slide_id, s.description, s.meta], sort_keys=True,
                            default=str).encode())
    return h.hexdigest()[:16]


def partial_dir(out_dir: Path, digest: str) -> Path:
    return out_dir / f"{PARTIAL_PREFIX}{digest}"


def _record_path(tmp: Path, split: str, index: int) -> Path:
    return tmp / f".chunk-{split}-{index:06d}.json"


def record_chunk(tmp: Path, split: str, index: int, entry: Optional[Dict[str, Any]],
                 skipped: List[Dict[str, str]], digests: Dict[str, str],
                 upscaled: Sequence[Tuple[str, Tuple[int, int]]] = ()) -> None:
    """Record a finished chunk (`entry` None: every image of it was unreadable, no tar), atomically, with the
    digests of its images (a resumed build finds copies in it without reading it back) and the images it upscaled
    (name, source width and height: a resumed build's warning counts them too)."""
    path = _record_path(tmp, split, index)
    replace_text(path, json.dumps({"entry": entry, "skipped": skipped, "digests": digests,
                                   "upscaled": [[name, list(wh)] for name, wh in upscaled]}, sort_keys=True))


def finished_chunk(tmp: Path, split: str, index: int) -> Optional[Dict[str, Any]]:
    """The record of a chunk an earlier run of this job finished, if its tar is still whole; else None."""
    path = _record_path(tmp, split, index)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    entry = record.get("entry")
    if entry is not None:
        tar = tmp / entry["file"]
        if not tar.is_file() or tar.stat().st_size != entry["bytes"] or sha256_file(tar) != entry["sha256"]:
            return None
    return record


def drop_records(tmp: Path) -> None:
    """Remove the chunk records before the folder's content is moved into the output."""
    for path in tmp.glob(".chunk-*.json*"):
        path.unlink()
