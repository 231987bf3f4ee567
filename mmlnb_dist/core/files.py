"""File helpers shared by core and data: one implementation of "is this file unchanged" (digests of checkpoints
and shards), of "replace a file whole", of "open a user's CSV", of "read a user's YAML" and of "a file stands
where a command writes a folder"."""
from __future__ import annotations

import csv
import errno
import hashlib
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Optional, TextIO, Union

import yaml

from .errors import UserError


def sha256_file(path: Union[str, Path], block_size: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in blocks (checkpoints and shards can be many GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_text(path: Union[str, Path], text: str) -> None:
    """Write `text` to `path` through a temporary file beside it and an atomic rename: a killed process leaves the
    old file or the new one, never half of one (and a reader never sees half of one). Creates the folder.

    The temporary name is unique, so two writers of one record (threads, trials sharing a cache, ranks) never
    rename each other's half-written file; the data is flushed to disk before the rename and the rename after it,
    so a power cut does not leave an empty record where the old one was (ext4's delayed allocation)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not `tempfile.mkstemp`: its files are private (0600) and a record must keep the user's umask
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (network mounts) refuse a folder's fsync; the rename itself stands
    finally:
        os.close(fd)


def open_csv(path: Union[str, Path]) -> TextIO:
    """A user's CSV file, opened for `csv.DictReader`: UTF-8 with or without the byte-order mark Excel writes ("CSV
    UTF-8"), which would otherwise stick to the first column's name ('\ufeffpath' is not 'path')."""
    return open(path, newline="", encoding="utf-8-sig")


def dict_reader(handle: TextIO) -> csv.DictReader:
    """`csv.DictReader` over a user's CSV (`open_csv`), comma-, semicolon- (Excel in locales whose decimal mark is
    the comma) or tab-separated: the header line's most frequent of the three separates the columns."""
    header = handle.readline()
    handle.seek(0)
    return csv.DictReader(handle, delimiter=max((",", ";", "\t"), key=header.count) if header else ",")


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key written twice in one YAML mapping; `key` is the key."""

    def __init__(self, key: Any, problem: str, mark: Any) -> None:
        super().__init__(None, None, problem, mark)
        self.key = key


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key written twice in one mapping. PyYAML keeps the last and drops the
    first without a word: a config with two `train:` sections trains with half of what its author wrote."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first_line = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` then an explicit key is YAML's way to override a shared block
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    earlier = first_line.get(key)
                except TypeError:
                    continue  # an unhashable key: SafeLoader's own error names it
                if earlier is None:
                    first_line[key] = line
                else:  # both may be on one line (a flow mapping: `{a: 1, a: 2}`)
                    where = f"on line {earlier} and on line {line}" if earlier != line else f"on line {line}"
                    raise DuplicateKeyError(key, f"found the key {key!r} twice, {where} (the second would "
                                                 f"silently replace the first; keep one)", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Union[str, Path]) -> Any:
    """A user's YAML file (config, search space, label merge), read as `yaml.safe_load` would, except that a key
    written twice in one mapping raises `DuplicateKeyError` (a `yaml.YAMLError`) naming the key, the line(s) and
    the file."""
    with open(path, encoding="utf-8") as handle:
        return load_yaml_text(handle)


def load_yaml_text(text: Union[str, TextIO]) -> Any:
    """`text` (or an open file's) read as `load_yaml` reads a file (a command-line override's value): a key
    written twice in one mapping raises `DuplicateKeyError`."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def refuse_file_in_the_way(folder: Union[str, Path], what: str) -> None:
    """`folder`, which a command is about to create or write into, where a file stands (the folder itself or one
    above it): a `UserError` naming the file and `what` chose the folder (a setting, a flag), before any work. mkdir,
    iterdir and rmtree fail on it with a bare NotADirectoryError / FileExistsError, often after earlier work."""
    folder = Path(folder)
    for p in (folder, *folder.parents):
        if p.exists() and not p.is_dir():
            where = "" if p == folder else f" (it would hold {folder})"
            raise UserError(f"{what}: {p} is a file, not a folder{where}; move the file away or choose another "
                            f"folder")


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float (an AUROC undefined on a split, a fusion model's missing `alpha`) as None:
    JSON has no NaN, and strict readers (jq, JavaScript, Spark) refuse the bare `NaN` Python's json writes. Write
    with `json.dumps(strict_json(value), allow_nan=False)`."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


EXPORT_DESCRIPTION = "model_config.json"
"""An export folder's description, written last (and whole, `replace_text`): a folder without it is unfinished."""


def start_export(folder: Path) -> None:
    """Before an export writes into `folder`: remove its old description, so that a folder seen while (or after
    a kill during) the export is marked unfinished, never an old description beside new weights."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / EXPORT_DESCRIPTION).unlink(missing_ok=True)


def read_export_description(folder: Union[str, Path], what: str) -> dict:
    """`folder`'s export description (a JSON object): a `UserError` naming the folder where it is missing (not an
    export folder, or one whose export did not finish) or not written whole, never a JSON traceback."""
    folder = Path(folder)
    path = folder / EXPORT_DESCRIPTION
    unfinished = ("the export did not finish (a run stopped while exporting?); run the training again with "
                  "run.resume=true (it exports its best checkpoint), or copy the export again from where it came "
                  "from")
    if not path.is_file():
        if (folder / "model.safetensors").is_file():  # written first
            raise UserError(f"{folder}: no {EXPORT_DESCRIPTION} beside the other files: {unfinished}")
        raise UserError(f"{path} not found: not a {what} export folder")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # (JSONDecodeError, UnicodeDecodeError)
        raise UserError(f"{path} in {folder} is not whole ({err}): {unfinished}") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path} in {folder} is not a {what} export description (no JSON object): {unfinished}")
    return meta


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
TORCH_WRITE_FAILED = ("inline_container.cc", "PytorchStreamWriter", "iostream error")
"""How torch's C++ file writer (`torch.save`, which DeepSpeed saves checkpoints with) reports a write the disk
refused: a RuntimeError without an errno ("basic_ios::clear: iostream error", "[enforce fail at
inline_container.cc:672] . unexpected pos ...", "PytorchStreamWriter failed writing file ...")."""


def storage_failure(err: BaseException) -> Optional[str]:
    """Why writing failed, when the storage refused it: a full disk or an exhausted quota (OSError ENOSPC/EDQUOT),
    or torch's writer failing a write (no errno: a full disk, a quota, or a failing disk); None for anything else
    (a bug keeps its traceback)."""
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        return err.strerror or os.strerror(err.errno)
    # (a reader's failure, "PytorchStreamReader ... inline_container.cc", is a damaged file, not the storage)
    if isinstance(err, RuntimeError) and any(mark in str(err) for mark in TORCH_WRITE_FAILED) \
            and "PytorchStreamReader" not in str(err):
        return f"torch: {str(err).splitlines()[0].strip()}"
    return None
