"""Which base VLM weights wrote a shard set's descriptions: a digest of the weight files' bytes and, for a Hugging
Face id, the commit of the cached snapshot `from_pretrained` loads.

    weights_identity("Qwen/Qwen2.5-VL-7B-Instruct")   # {"model_revision": "<commit>", "model_weights": "<sha256>"}
    weights_identity("/models/qwen-7b")               # {"model_weights": "<sha256>"}

The digest reads the bytes, never the files' times: a copy of the same weights (`cp -r` gives new mtimes) is the same
model, and new weights of the same size copied with their times kept (`cp -p`, `rsync -t`, a tar extract) are not.
A file up to `WHOLE_BYTES` is read whole; a larger one (a 7B's 4 GB shards) by its first and last MiB and
`SAMPLES` evenly spaced 64 KiB blocks between them (about 18 MiB a file, under a second): a fine-tune that changes
any tensor larger than the spacing (each of a 7B's language layers' projections) changes the digest.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")  # what from_pretrained loads (not a
# checkpoint folder's optimizer.bin or training_args.bin)
WHOLE_BYTES = 64 << 20
EDGE_BYTES = 1 << 20
BLOCK_BYTES = 64 << 10
SAMPLES = 256


def hub_snapshot(name: str) -> Optional[Tuple[str, Path]]:
    """(commit, snapshot folder) of the cached revision `from_pretrained(name)` loads (`refs/main`), or None when
    `name` is a local folder or not in the Hugging Face cache."""
    if Path(name).expanduser().is_dir():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(name, "config.json")
    except Exception:  # not a valid repo id (a path that does not exist): nothing cached to name
        return None
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    return folder.name, folder


def weights_digest(folder: Path) -> Optional[str]:
    """sha256 over each weight file's name, size and sampled bytes (module docstring); None without weight files."""
    files = sorted({f for pattern in WEIGHT_PATTERNS for f in Path(folder).glob(pattern) if f.is_file()})
    if not files:
        return None
    return hashlib.sha256(json.dumps([(f.name, f.stat().st_size, _content_digest(f)) for f in files])
                          .encode()).hexdigest()


def _content_digest(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:  # (follows a hub cache's symlinks into its blobs)
        if size <= WHOLE_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            return h.hexdigest()
        h.update(f.read(EDGE_BYTES))
        span = size - 2 * EDGE_BYTES - BLOCK_BYTES
        for i in range(SAMPLES):
            f.seek(EDGE_BYTES + span * i // (SAMPLES - 1))
            h.update(f.read(BLOCK_BYTES))
        f.seek(size - EDGE_BYTES)
        h.update(f.read(EDGE_BYTES))
    return h.hexdigest()


def weights_identity(name: str, resolved: str) -> Dict[str, str]:
    """`model_weights` (and `model_revision` for a cached hub id) of the VLM `name` resolved to `resolved`; {} when
    neither a folder nor a cached snapshot holds weight files (a hub id only the network has)."""
    snapshot = hub_snapshot(name)
    folder = snapshot[1] if snapshot else Path(resolved)
    digest = weights_digest(folder) if folder.is_dir() else None
    out = {"model_revision": snapshot[0]} if snapshot else {}
    return {**out, **({"model_weights": digest} if digest else {})}


def model_folder(name: str, resolved: str) -> Path:
    """The folder the VLM's files are read from: a cached hub id's snapshot, else `resolved`."""
    snapshot = hub_snapshot(name)
    return snapshot[1] if snapshot else Path(resolved)


BASE_RECORD = "base_model.json"
"""In a fine-tuning run's folder: `weights_identity` of the base it began on (`record_base`)."""


def _base_identity(vcfg: Any) -> Dict[str, str]:
    """The base's weights identity; {} for `tiny` (its seed and tower, in the compared config, name it)."""
    if vcfg.model == "tiny":
        return {}
    from .model import resolve_model_path

    return weights_identity(vcfg.model, resolve_model_path(vcfg.model))


def check_resumed_base(vcfg: Any, run_dir: Path, resuming: bool) -> None:
    """Refuse a resume whose base weights differ from those the run began on: the checkpoints hold the LoRA weights
    alone, so the resume would go on training them on another model (a base folder overwritten, a newer hub
    revision pulled between the kill and the resume). The same bytes elsewhere (a copy, new mtimes, a newer hub
    commit that left the weights alone, a hub id's snapshot copied to a folder and named so) resume: where both sides
    have a weights digest, it alone decides; another `vlm.model` name resumes only on the same digest.
    Reads only (`check` creates nothing)."""
    record = Path(run_dir) / BASE_RECORD
    named = _began_named(Path(run_dir))
    renamed = named is not None and named != vcfg.model  # (the recipe lets vlm.model change: decided here)
    if not resuming or not (record.is_file() or renamed):
        return
    began = json.loads(record.read_text()) if record.is_file() else {}
    now = _base_identity(vcfg)
    same_bytes = bool(began.get("model_weights")) and began.get("model_weights") == now.get("model_weights")
    if began.get("model_weights") and now.get("model_weights"):  # the bytes decide, as describe's `same_writer`:
        began, now = ({"model_weights": d["model_weights"]} for d in (began, now))  # a commit that left the
        # weights alone (a README, a tokenizer config) is the same base; the commit decides only without digests
    changed = [f"{k}: {began.get(k)} -> {now.get(k)}" for k in sorted(set(began) | set(now))
               if began.get(k) != now.get(k)]
    if renamed and not same_bytes:  # another name is the same base only where both weight digests say so
        changed.insert(0, f"vlm.model: {named} -> {vcfg.model}")
    if changed:
        from ...core.errors import UserError

        raise UserError(f"run.resume=true: vlm.model {vcfg.model} is not the base this run began on "
                        f"({'; '.join(changed)}; {record}): its checkpoints hold LoRA weights trained on that base. "
                        f"Give the base it began on, or start a new run (another run.name)")


def _began_named(run_dir: Path) -> Optional[str]:
    """The `vlm.model` the run began with (its stored config.yaml), or None before the run stored one."""
    import yaml

    stored = run_dir / "config.yaml"
    if not stored.is_file():
        return None
    try:
        vlm = (yaml.safe_load(stored.read_text()) or {}).get("vlm")
    except (yaml.YAMLError, AttributeError):  # (a damaged config: `core.recipe`'s resume check names it)
        return None
    return str(vlm["model"]) if isinstance(vlm, dict) and vlm.get("model") is not None else None


def record_base(vcfg: Any, run_dir: Path) -> None:
    """Write `BASE_RECORD` (rank 0, at setup: `check_resumed_base` has passed or there is nothing to resume)."""
    (Path(run_dir) / BASE_RECORD).write_text(json.dumps(_base_identity(vcfg), indent=1, sort_keys=True) + "\n")
