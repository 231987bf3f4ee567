"""File digests shared by checkpoints (core) and shards (data): one implementation of "is this file unchanged"."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Union


def sha256_file(path: Union[str, Path], block_size: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in blocks (checkpoints and shards can be many GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()
