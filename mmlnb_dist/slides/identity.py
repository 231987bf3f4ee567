"""What a slide file is, for deciding whether work done on it still holds: a `slides tile` resume trusts a staged
slide, and `pipeline --slides` skips the tile stage, only while the slide's identity is unchanged.

Name and size alone are not enough: an uncompressed TIFF replaced by another slide of the same dimensions has the
same size, and a MIRAX `.mrxs` is a small index whose pixels live in a folder beside it. So the identity holds the
modification time, a hash of the file's first and last MiB (where TIFF headers, offsets and the pyramid's small
levels are; hashing a multi-GB slide whole would take longer than tiling it), and the names, sizes and
modification times of the files a multi-file format reads besides the one given. The hash is computed once per
file version in a process (a `pipeline --slides` run needs each slide's identity twice).
"""
from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:
    from .config import SlidesConfig

EDGE_BYTES = 1 << 20  # hashed at each end of a file

# Hamamatsu VMS/VMU index keys naming the files the slide is made of (ImageFile, ImageFile(x,y), MapFile, ...).
_VMS_FILE_KEY = re.compile(r"^\s*(ImageFile(\(\d+,\d+\))?|MapFile|OptimisationFile)\s*=\s*(.+?)\s*$")


def file_identity(path: Path) -> str:
    """`name|size|mtime_ns|sha256(first MiB + last MiB)` of one file; `name|missing` when it does not exist and
    `name|size|mtime_ns|unreadable` when it cannot be read (no read permission): the stage that reads it then says
    so, for that file alone."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return f"{path.name}|missing"
    try:
        digest = _cached_edges(str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    except OSError:
        return f"{path.name}|{st.st_size}|{st.st_mtime_ns}|unreadable"
    return f"{path.name}|{st.st_size}|{st.st_mtime_ns}|{digest}"


@functools.lru_cache(maxsize=4096)
def _cached_edges(path: str, size: int, mtime_ns: int, ctime_ns: int, ino: int) -> str:
    """`_hash_edges` once per file version in this process: a `pipeline --slides` run asks for each slide's identity
    in its tile-stage plan and again in the tiler's resume fingerprint. The change time is in the key because a
    rewrite in place keeps the inode and can keep the size and (a copy that keeps times) the modification time,
    while no user call sets the change time back; an OSError is not cached (lru_cache keeps results only)."""
    return _hash_edges(path, size)


def _hash_edges(path: str, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            f.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            h.update(f.read(EDGE_BYTES))
    return h.hexdigest()


def companion_files(path: Path) -> List[Path]:
    """The other files OpenSlide reads for the slide `path` (sorted), for the multi-file formats: MIRAX (`.mrxs`:
    every file in the folder of the same stem beside it), Hamamatsu VMS/VMU (the image, map and optimisation files
    its index names) and DICOM (the other `.dcm` files of its folder: a slide is a series of instances)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mrxs":
        folder = path.with_suffix("")
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    if suffix in (".vms", ".vmu"):
        return sorted({path.parent / name for name in _vms_files(path)})
    if suffix == ".dcm":
        return sorted(p for p in path.parent.iterdir()
                      if p.is_file() and p.suffix.lower() == ".dcm" and p.name != path.name)
    return []


def _vms_files(path: Path) -> List[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    names = []
    for line in text.splitlines():
        m = _VMS_FILE_KEY.match(line)
        if m:
            names.append(m.group(3))
    return names


def slide_identity(path: Path) -> str:
    """A digest of the slide file's `file_identity` and of each companion file's name (relative to the slide's
    folder), size and modification time. Companions are not hashed: a MIRAX folder holds gigabytes in hundreds of
    files, and a rewritten data file changes its modification time."""
    path = Path(path)
    h = hashlib.sha256(file_identity(path).encode())
    for p in companion_files(path):
        try:
            st = p.stat()
            h.update(f"\n{p.relative_to(path.parent).as_posix()}|{st.st_size}|{st.st_mtime_ns}".encode())
        except (OSError, ValueError):
            h.update(f"\n{p.name}|missing".encode())
    return h.hexdigest()


def tiling_inputs_identity(slides: Path, s: "SlidesConfig") -> Dict[str, Any]:
    """The identity of everything tiling reads besides the label file and the options: each slide `--slides`
    names (a folder's, or those a CSV lists wherever they are) with its companion files, the corrected masks in
    `slides.mask_dir` and the `slides.stain.target` image. A slide list that cannot be read contributes no
    slides (tiling then says why)."""
    from ..core.errors import UserError
    from .inputs import MASK_SUFFIX, find_slides

    try:
        found = find_slides(Path(slides))
    except UserError:
        found = {}
    masks = []
    if s.mask_dir is not None and Path(s.mask_dir).is_dir():
        masks = [file_identity(p) for p in sorted(Path(s.mask_dir).iterdir())
                 if p.is_file() and p.suffix.lower() == MASK_SUFFIX]
    return {"slides": {sid: slide_identity(path) for sid, path in found.items()}, "masks": masks,
            "stain_target": None if s.stain.target is None else file_identity(Path(s.stain.target))}
