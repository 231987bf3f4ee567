"""What the pipeline's stages are built from outside the config: user-given folders and files (slides, patches and
the images a patches CSV lists) and the local files a setting names, fingerprinted by what they hold (names,
sizes, modification times), so that a file replaced at the same path rebuilds the stages it reaches."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Tuple

from ..core.config import Section, is_path_text
from ..core.errors import UserError
from ..data.collect import read_patch_csv
from ..data.shardset import ShardError
from .stages import StageResult, fingerprint


def files_fingerprint(path: Path) -> str:
    """What a user-given input folder (slides, patches) or file holds: names, sizes and modification times."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"input not found: {path}")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return fingerprint([(str(p.relative_to(path.parent)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def local_inputs(section: Section, prefix: str = "") -> List[Any]:
    """[dotted key, what it holds] for every `PathText` setting of `section` and its sections that names an existing
    local file or folder (features, weights, a model folder): the setting alone misses a file replaced at the same
    path. Empty for hub names, so a stage fingerprinted before this was checked keeps its fingerprint."""
    found: List[Any] = []
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        if isinstance(value, Section):
            found += local_inputs(value, f"{prefix}{name}.")
        elif value and isinstance(value, str) and is_path_text(field) and Path(value).exists():
            found.append([f"{prefix}{name}", files_fingerprint(Path(value))])
    return found


def _file_state(path: Path) -> Tuple[str, Optional[int], Optional[int]]:
    """(path, size, modification time); no size or time for a missing file (the shards stage says so)."""
    try:
        stat = path.stat()
    except OSError:
        return str(path), None, None
    return str(path), stat.st_size, stat.st_mtime_ns


def listed_images(table: Path) -> List[Path]:
    """The images a patches CSV lists, read as `collect_samples` reads them; none when the CSV cannot be read
    (the shards stage then says why)."""
    try:
        return [Path(s.image) for s in read_patch_csv(table)]
    except ShardError:
        return []


def patches_fingerprint(path: Path) -> str:
    """What the shards stage reads from `--patches`: the folder's files, or the CSV, each image it lists and the
    `descriptions.jsonl` beside it (`collect_samples`); a folder's labels.csv may list images outside it too."""
    path = Path(path)
    held = files_fingerprint(path)
    table = path if path.is_file() else path / "labels.csv"
    if not table.is_file():
        return held
    folder = path.resolve()
    images = [p for p in listed_images(table) if path.is_file() or not p.resolve().is_relative_to(folder)]
    beside = [table.parent / "descriptions.jsonl"] if path.is_file() else []  # (a folder's is among its files)
    if not images and not beside:
        return held
    return fingerprint(held, [_file_state(p) for p in images + beside])


def given_input(path: Path, name: str = "input") -> StageResult:
    """A user-given source (patch folder or CSV) as the input of the shards stage."""
    return StageResult(name, Path(path), patches_fingerprint(path), True, 0.0, status="input")
