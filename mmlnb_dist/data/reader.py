"""Reading raw samples out of a tar shard, in file order, with errors that name the shard.

Tars are read with the standard library's `tarfile` in streaming mode: one sequential pass, no seeking, the way
a remote stream would be read. The loader needs to start and stop inside a shard at exact sample indices, and
needs a truncated shard reported with its name, so this is a plain generator rather than a webdataset pipeline.
Nothing here ever unpickles data.
"""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Set, Tuple, Union

from .shardset import ShardError

DEFAULT_MAX_MEMBER_BYTES = 64 * 1024 * 1024
"""`data.loader.max_member_bytes`'s default: no image, text or json of a patch comes near it."""


def iter_shard_samples(tar_path: Union[str, Path],
                       max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> Iterator[Dict[str, Any]]:
    """Raw samples of one shard, in file order: `{"__key__": str, "__shard__": str, "jpg": bytes, "cls": bytes, ...}`.

    Members are grouped by the stem before the first dot of the file name (`member_key`). A truncated or corrupt tar
    raises `ShardError` naming the shard and the last complete key; a member larger than `max_member_bytes`
    raises `ShardError` naming shard, key and size before it is read (a corrupt size field or a wrong file in
    the shard would otherwise be read whole into memory).
    """
    tar_path = Path(tar_path)
    shard = tar_path.name
    current: Optional[Dict[str, Any]] = None
    last_key = None
    done: Set[str] = set()  # keys whose sample was yielded
    try:
        # Streaming mode ("r|"): one sequential pass, no seeking, the same way a remote stream would be read.
        with tarfile.open(tar_path, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                stem, ext = member_key(member.name)
                if not stem:  # a hidden file (`._a.jpg`, `.DS_Store` of a macOS tar): no sample's member
                    continue
                if member.size > max_member_bytes:
                    raise ShardError(
                        f"shard {tar_path}: key '{stem}' member {member.name} is {member.size} bytes, over "
                        f"data.loader.max_member_bytes={max_member_bytes}; raise the limit if the shard is right, "
                        f"else rebuild the shard")
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if current is not None and current["__key__"] != stem:
                    last_key = current["__key__"]
                    done.add(last_key)
                    yield current
                    current = None
                if current is None:
                    if stem in done:
                        # a sample is its adjacent members (as in webdataset): `tar -cf s.tar *.jpg *.cls` split each
                        # one into an image without its label and a label without its image
                        raise ShardError(
                            f"shard {tar_path}: key '{stem}' appears again at member {member.name}, after other keys: "
                            f"the members of a sample must be next to each other in the tar; repack it with the files "
                            f"in name order (tar --sort=name, or a sorted file list)")
                    current = {"__key__": stem, "__shard__": shard}
                if ext in current:  # `tar -rf` appended a second copy: one of them would be dropped unseen
                    raise ShardError(f"shard {tar_path}: key '{stem}' holds {member.name} twice (appended to the "
                                     f"tar?); repack the shard with each file once")
                current[ext] = data
            end = tar.offset  # where tarfile stopped: an end-of-archive block, the file's end or a bad header
        if _bad_header_at(tar_path, end):
            after = f" after key '{last_key}'" if last_key else " at its start"
            raise ShardError(f"shard {shard}: truncated or corrupt tar{after} (invalid member header at byte {end}); "
                             f"restore the shard or rebuild the shard set")
    except FileNotFoundError:
        raise ShardError(f"shard not found: {tar_path}") from None
    except (tarfile.TarError, EOFError, OSError) as err:
        packed = None if last_key else _compression(tar_path)
        if packed:  # webdataset reads compressed shards, so users pack them: intact, not "corrupt"
            raise ShardError(f"shard {tar_path} is {packed}-compressed; shards are read as plain tars: decompress it "
                             f"(gunzip / bunzip2 / unxz / unzstd) and list the .tar (its bytes and sha256) in the "
                             f"manifest, or rebuild the shard set") from None
        after = f" after key '{last_key}'" if last_key else " at its start"
        raise ShardError(f"shard {shard}: truncated or corrupt tar{after} ({err})") from None
    if current is not None:
        yield current


def member_key(name: str) -> Tuple[str, str]:
    """(key, extension) of a tar member name, as webdataset splits it: the extension starts at the first dot of the
    file's own name (a folder `v1.2/` keeps its dot), and a leading `./` (`tar -C dir -cf shard.tar .`, a shard
    packed by hand) is not part of the key (it made the key empty: every member one sample). The extension is
    lower-cased, as webdataset does: `a.JPG` (a camera's or Windows' export) is the sample's `jpg`, which the decoders
    look for (an upper-case one made every such sample "no image member"); keys keep their case. A hidden file's
    name gives the empty key: it is no sample's member."""
    while name.startswith("./"):
        name = name[2:]
    folder, slash, base = name.rpartition("/")
    if base.startswith("."):  # hidden: macOS tar's `._a.jpg` resource forks, `.DS_Store` (webdataset skips them)
        return "", ""
    stem, _, ext = base.partition(".")
    return folder + slash + stem, ext.lower()


COMPRESSED_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
                    (b"\x28\xb5\x2f\xfd", "zstd"))
"""Leading bytes of the compressed files a shard may be packed as (`.tar.gz`, `.tgz`, ...)."""


def _compression(tar_path: Path) -> Optional[str]:
    """The compression `tar_path` starts with (gzip, bzip2, xz, zstd), or None."""
    try:
        with open(tar_path, "rb") as f:
            head = f.read(6)
    except OSError:
        return None
    return next((name for magic, name in COMPRESSED_MAGIC if head.startswith(magic)), None)


def _bad_header_at(tar_path: Path, offset: int) -> bool:
    """Whether the 512-byte block at `offset`, where `tarfile` ended its pass, is neither an end-of-archive block
    (zeros) nor the file's end. `tarfile` takes a header it cannot parse after the first one (a flipped byte breaks
    its checksum) for the end of the archive, so a corrupt shard would read as a short one, without a word."""
    with open(tar_path, "rb") as f:
        f.seek(offset)
        block = f.read(tarfile.BLOCKSIZE)
    return bool(block.strip(b"\0"))


def lacks_end_block(tar_path: Path) -> bool:
    """Whether the tar's last 512-byte block is not zeros: every tar writer ends with an end-of-archive block, so the
    file was cut (a copy or download stopped early). `tarfile` reads a tar cut on a block boundary between samples
    as a short one, without error (`iter_shard_samples` yields its samples; the loader counts the rest missing)."""
    with open(tar_path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(size - tarfile.BLOCKSIZE, 0))
        return bool(f.read().strip(b"\0"))
