"""The on-disk form of extracted features, what made them, and reading them back.

    <out>/provenance.json                what made the features (`core.provenance.check_or_record` format)
    <out>/<shard stem>.safetensors       one file per input shard: `features` float32 [N, D] with the sample keys
                                         (and the keys skipped as unreadable), the shard's split and the SHA-256
                                         of every sample's image member and the digest of the record's identity
                                         (a rerun redoes a file made otherwise) in its metadata; never a pickle
    <out>/index.json                     written last, when every shard is done: files, counts, dimension and
                                         `images_sha256` (split, key and image bytes of every sample)

A shard's file is written under a temporary name and renamed when complete, so a file with the final name is
whole; a file that still fails to read back (copied half-way, disk full) counts as torn and is redone.

The record splits into `identity` (what the features ARE: encoder name, source, weights digest, whether the
weights were loaded or random (`pretrained`), licence, the image transform, the shard set digest and the
precision the encoder ran in: bf16 features are other numbers than fp32 ones) and `compute` (how they were
computed: dtype, package versions).
A rerun compares the whole record; a consumer (the fusion recipe) compares the identity with the encoder and
transform it would run itself, and the shard set by its images (`check_shards_fit`): the very set the features
were extracted from, or one with the same splits, keys and image bytes (a set re-described by `describe`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from ..core.engine import precision_of, read_user_deepspeed_json
from ..core.errors import UserError
from ..core.provenance import ProvenanceError, differences, format_changes
from ..core.sections import DistributedConfig
from ..data.shardset import MANIFEST, ShardSet
from .image_digests import image_differences, recorded_images, shard_set_images

PROVENANCE_FILE = "provenance.json"
INDEX_FILE = "index.json"
FORMAT = "mmlnb-features/1"
TMP_SUFFIX = ".tmp"
TRANSFORM = "resize shorter side, centre crop (data.images.ImageTransform), no augmentation"
RANDOM_WEIGHTS = "none (random initialisation)"
"""The licence recorded for features of an encoder built without weights: its weights' licence does not apply,
and the record must not read as if those weights had made the features."""
VERSIONED_PACKAGES = ("mmlnb-dist", "torch", "torchvision", "timm", "transformers", "open_clip_torch", "pillow")


class FeaturesError(UserError):
    """An extracted-feature folder is missing, unfinished or does not fit what uses it."""


def feature_file(out: Path, shard_file: str) -> Path:
    """Where the features of input shard `shard_file` (`train-000000.tar`) live."""
    return Path(out) / (Path(shard_file).stem + ".safetensors")


def package_versions() -> Dict[str, Optional[str]]:
    versions: Dict[str, Optional[str]] = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


COMPUTE_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
"""`compute.dtype` for each precision: the encoder cast to it, as a training run's DeepSpeed engine casts it."""
AUTOCAST_DTYPES = {"bf16": "bfloat16-autocast", "fp16": "float16-autocast"}
"""`compute.dtype` of extractions that ran bf16/fp16 under autocast instead (every record before the cast, including
those from before `identity.precision`): other numbers than the same precision's training run computes."""


def run_precision(dist: DistributedConfig) -> str:
    """fp32, bf16 or fp16: what a run's model (its frozen image encoder included) computes in, as DeepSpeed casts
    it (`distributed.precision`, or the user's `distributed.deepspeed_config`)."""
    return precision_of(read_user_deepspeed_json(dist.deepspeed_config)) if dist.deepspeed_config \
        else dist.precision


def recorded_precision(record: Mapping[str, Any]) -> Optional[str]:
    """The precision a folder's features were computed in; a record from before `identity.precision` tells it by
    `compute.dtype` (those extractions ran bf16 autocast on every GPU, fp32 on the CPU)."""
    by_dtype = {dtype: precision for table in (COMPUTE_DTYPES, AUTOCAST_DTYPES) for precision, dtype in table.items()}
    return record["identity"].get("precision") or by_dtype.get(record.get("compute", {}).get("dtype"))


def feature_identity(encoder: Any, weights_digest: str, image_size: int, shards: ShardSet,
                     precision: str) -> Dict[str, Any]:
    """What the features of `encoder` (an `models.ImageEncoder`) on `shards`, computed in `precision` (fp32,
    bf16, fp16), are: any difference means other numbers. `weights_digest` is `models.module_fingerprint(name,
    encoder.body)` of the weights actually used; `pretrained` says whether those were loaded (pretrained or
    `weights_path`) or a random initialisation."""
    pretrained = encoder.weights_digest is not None  # set by `build_image_encoder` when weights were loaded
    return {"precision": precision,
        "encoder": {"name": encoder.name, "source": encoder.source, "weights_digest": weights_digest,
                    "pretrained": pretrained, "licence": encoder.licence if pretrained else RANDOM_WEIGHTS,
                    "out_dim": int(encoder.out_dim)},
        "transform": {"image_size": int(image_size), "mean": list(encoder.mean), "std": list(encoder.std),
                      "encoder_input_size": encoder.input_size, "resize": TRANSFORM},
        "shards": {"manifest_sha256": shards.digest, "num_samples": sum(int(e["num_samples"])
                                                                          for _, _, e in shards.entries())},
    }


def identity_sha256(identity: Mapping[str, Any]) -> str:
    """The digest of a record's `identity` that each shard file carries (`write_shard_features(identity=...)`)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def write_shard_features(path: Path, keys: Sequence[str], features: torch.Tensor, *, shard_sha256: str,
                         skipped: Sequence[Mapping[str, str]], split: str, images: Mapping[str, str],
                         identity: Optional[str] = None) -> None:
    """Atomically write one shard's features (temporary name, fsync, rename). `images`: key -> SHA-256 of the
    image member of every sample of the shard, skipped ones included (`image_digests.sample_image_sha256`);
    `identity`: `identity_sha256` of what made them, so that a rerun tells its own files from another run's."""
    from safetensors.torch import save_file

    tmp = path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")
    meta = {"format": FORMAT, "keys": json.dumps(list(keys)), "skipped": json.dumps(list(skipped)),
            "shard_sha256": shard_sha256, "split": split, "images": json.dumps(dict(images))}
    if identity is not None:
        meta["identity_sha256"] = identity
    try:
        save_file({"features": features.float().contiguous()}, str(tmp), metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException as err:  # (disk full, Ctrl-C): no half-written file left to fill the disk of the rerun
        tmp.unlink(missing_ok=True)
        os_error = os_error_of(err, tmp)
        if os_error is None:
            raise
        raise os_error from err


def os_error_of(err: BaseException, path: Path) -> Optional[OSError]:
    """The OSError inside a SafetensorError ("... No space left on device (os error 28)"), naming `path`; None for
    any other error. safetensors reports a full disk as its own error, which the CLI's one-line disk-full message
    would not recognise."""
    found = re.search(r"\(os error (\d+)\)", str(err)) if type(err).__name__ == "SafetensorError" else None
    return OSError(int(found.group(1)), os.strerror(int(found.group(1))), str(path)) if found else None


def is_own_temporary(name: str, finals: Iterable[str]) -> bool:
    """Whether file `name` is the temporary a write of one of `finals` (file names) leaves: `<final>.<pid>.tmp`."""
    stem, dot, pid = name[:-len(TMP_SUFFIX)].rpartition(".") if name.endswith(TMP_SUFFIX) else ("", "", "")
    return bool(dot) and pid.isdigit() and stem in set(finals)


def remove_temporaries(out: Path, shard_files: Sequence[str]) -> None:
    """The half-written files a killed extraction (SIGKILL, OOM: no `except` ran) left for `shard_files`
    (`<stem>.safetensors.<pid>.tmp`); only the holder of the folder's lock calls this, before any rank writes."""
    for shard_file in shard_files:
        final = feature_file(out, shard_file)
        for leftover in final.parent.glob(f"{final.name}.*{TMP_SUFFIX}"):
            if is_own_temporary(leftover.name, [final.name]):
                leftover.unlink(missing_ok=True)


def read_shard_features(path: Path) -> Tuple[List[str], torch.Tensor, Dict[str, str]]:
    """(keys, features [N, D], metadata) of one shard's file; raises on a torn or foreign file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        # A copy: the tensor may map the file, and a later rewrite of that file must not change it.
        features = f.get_tensor("features").clone()
    keys = json.loads(meta["keys"])
    if features.ndim != 2 or features.shape[0] != len(keys):
        raise ValueError(f"{len(keys)} keys for features of shape {tuple(features.shape)}")
    return keys, features, meta


def read_shard_keys(path: Path) -> List[str]:
    """The keys of one shard's file, from its metadata alone (the features are not read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {})["keys"])


def finished_shard(path: Path, entry: Mapping[str, Any], identity: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The summary of a complete features file for manifest entry `entry`, or None when it must be (re)done:
    absent, torn, made from another version of the shard, or (`identity` given) not stamped with that
    `identity_sha256`: made by other settings, or by a run whose provenance.json is gone (its encoder unknown)."""
    if not path.is_file():
        return None
    try:
        keys, features, meta = read_shard_features(path)
        skipped = json.loads(meta["skipped"])
        json.loads(meta["images"]), meta["split"]  # written by every extraction that records the images
    except Exception:  # any failure to read back means the file is not whole
        return None
    if meta.get("shard_sha256") != entry.get("sha256") or len(keys) + len(skipped) != int(entry["num_samples"]):
        return None
    if identity is not None and meta.get("identity_sha256") != identity:
        return None
    return {"file": path.name, "shard": entry["file"], "num_features": len(keys), "dim": int(features.shape[1]),
            "skipped": skipped}


def read_index(folder: Path) -> Dict[str, Any]:
    folder = Path(folder)
    index = folder / INDEX_FILE
    if folder.exists() and not folder.is_dir():
        raise FeaturesError(f"{folder} is a file, not a folder of extracted features (what `mmlnb-dist features "
                            f"extract` writes: {PROVENANCE_FILE}, {INDEX_FILE} and one .safetensors per shard)")
    if (folder / MANIFEST).is_file() and not (folder / PROVENANCE_FILE).is_file():
        raise FeaturesError(f"{folder} is a shard set, not extracted features; extract them from it with "
                            f"`mmlnb-dist features extract --shards {folder}` and give its output folder")
    if not (folder / PROVENANCE_FILE).is_file():
        raise FeaturesError(f"{folder} holds no extracted features ({PROVENANCE_FILE} missing); run "
                            f"`mmlnb-dist features extract --out {folder}` first")
    if not index.is_file():
        raise FeaturesError(f"{folder}: the extraction is unfinished ({INDEX_FILE} missing); rerun the same "
                            f"`mmlnb-dist features extract` command to finish it")
    try:
        return json.loads(index.read_text())
    except ValueError as err:
        raise FeaturesError(f"{index} is damaged ({err}); rerun the same `mmlnb-dist features extract` command "
                            f"to rewrite it (its finished shard files are kept)") from None


def check_files_present(folder: Path) -> None:
    """Refuse a finished extraction whose per-shard files are not all there (deleted since), before a run that
    reads them takes its folder: `load_features` would find out only once the run has started."""
    folder = Path(folder)
    gone = [item for item in read_index(folder).get("files", []) if not (folder / item["file"]).is_file()]
    if gone:
        raise FeaturesError(_gone(folder, gone[0], f"no such file{f', and {len(gone) - 1} more' if gone[1:] else ''}"))


def _gone(folder: Path, item: Mapping[str, Any], why: str) -> str:
    return (f"{folder / item['file']}: the features of {item.get('shard', 'a shard')} are gone or damaged since the "
            f"extraction finished ({why}); rerun the same `mmlnb-dist features extract` command: it redoes that file")


def read_record(folder: Path) -> Dict[str, Any]:
    path = Path(folder) / PROVENANCE_FILE
    try:
        return json.loads(path.read_text())["record"]
    except (ValueError, KeyError, TypeError) as err:
        raise FeaturesError(f"{path} is damaged ({type(err).__name__}: {err}), so what made the features in "
                            f"{folder} cannot be told; extract them again into another --out, or delete {folder} "
                            f"first") from None


def refuse_mismatch(what: str, recorded: Mapping[str, Any], expected: Mapping[str, Any], remedy: str) -> None:
    """`ProvenanceError` naming every key where what the features record differs from what the run expects."""
    changes = differences(recorded, expected)
    if changes:
        raise ProvenanceError(f"{what} does not fit this run (recorded -> this run):\n{format_changes(changes)}\n"
                              f"{remedy}".rstrip())


def check_identity(folder: Path, identity: Mapping[str, Any], shards: Optional[ShardSet], *, what_uses: str,
                   remedy: str = "") -> None:
    """Refuse features whose identity (encoder, weights, transform) differs from `identity`, naming every
    differing key (`core.provenance.ProvenanceError`), or whose shard set does not fit `shards`
    (`check_shards_fit`). `shards` None: the caller compared the shard set already and has held both folders'
    read locks since (`core.recipe.run`), so nothing can have changed them; comparing again would read every
    image of a re-described set a second time. (No process-wide memory of sets found fitting instead: it
    outlived the locks, so a later run in the same process, a pipeline's or a Tune worker's, trusted it.)"""
    read_index(folder)
    own = ("shards", "precision")  # compared by their own checks, which tell more than "differs"
    recorded = {k: v for k, v in read_record(folder)["identity"].items() if k not in own}
    refuse_mismatch(f"extracted features {folder}", recorded, {k: v for k, v in identity.items() if k not in own},
                    remedy=f"These features were made by another encoder, weights or transform than {what_uses}. "
                           + (remedy or "Extract features with its settings into another folder."))
    check_precision_fits(folder, identity["precision"])
    if shards is not None:
        check_shards_fit(folder, shards, remedy=remedy)


def check_precision_fits(folder: Path, precision: str) -> None:
    """Refuse features computed in another precision than `precision`, the one this run's frozen image encoder
    computes in (`run_precision`): trained on bf16 features, heads would differ from those of the same run
    from images, and a search would compare the two as if equal."""
    record = read_record(folder)
    recorded = recorded_precision(record)
    dtype = record.get("compute", {}).get("dtype")
    if recorded == precision and dtype in AUTOCAST_DTYPES.values():
        raise FeaturesError(
            f"extracted features {folder} were computed under {recorded} autocast ({dtype}: an extraction before "
            f"this version), but this run's image encoder is cast to {precision} as DeepSpeed casts the model: other "
            f"numbers (efficientnet_lite0 in bf16: 3.5% mean relative L2), so training on them would not be this run "
            f"from images. Extract them again into another folder with distributed.precision={precision}.")
    if recorded == precision:
        return
    raise FeaturesError(
        f"extracted features {folder} were computed in {recorded} ({dtype}), but this run's image encoder computes "
        f"in {precision} (distributed.precision={precision}). Extract them again with "
        f"distributed.precision={precision} (an extraction before this version computed fp32 on the CPU whatever "
        f"was asked), or train with distributed.precision={recorded}. Whatever the training precision, the "
        f"registered model runs its image encoder in fp32 on images when it predicts (docs/encoders.md, "
        f"'Precision').")


def check_shards_fit(folder: Path, shards: ShardSet, *, remedy: str = "") -> None:
    """Features fit `shards` when extracted from that very set (equal manifest digests) or from one with the same
    samples in the same splits and the same image bytes (its descriptions may differ). Else `FeaturesError`
    naming what differs; a folder from before the images record fits its own shard set only."""
    folder = Path(folder)
    recorded = read_record(folder)["identity"]["shards"]
    if recorded["manifest_sha256"] == shards.digest:
        return
    described = ((shards.manifest.get("provenance") or {}).get("describe") or {}).get("source_manifest_sha256")
    if described == recorded["manifest_sha256"]:  # `describe`'s output of that set: its keys, splits and image
        return  # bytes (a sample it could not describe is left out): fits without reading every image on every rank
    index = read_index(folder)
    where = (f"extracted features {folder} come from another shard set than {shards.root} (manifest sha256 "
             f"{recorded['manifest_sha256'][:12]} vs {shards.digest[:12]})")
    again = remedy or f"Extract features from {shards.root} into another folder."
    if "images_sha256" not in index:
        raise FeaturesError(f"{where}, and were extracted before extractions recorded each sample's image, so "
                            f"whether the images are the same cannot be told. {again} (to reuse features across "
                            f"re-described shard sets, extract them again with this version)")
    recorded_by_sample: Dict[Tuple[str, str], str] = {}
    for item in index["files"]:
        try:
            recorded_by_sample.update(recorded_images(folder, [item]))
        except Exception as err:  # noqa: BLE001 - absent, torn or foreign: whatever safetensors raises
            raise FeaturesError(_gone(folder, item, f"{type(err).__name__}: {err}")) from None
    lines = image_differences(recorded_by_sample, shard_set_images(shards))
    if lines:
        raise FeaturesError(f"{where} whose images differ:\n  " + "\n  ".join(lines) + f"\n{again}")


def load_features(folder: Path) -> Dict[str, torch.Tensor]:
    """key -> float32 feature vector over every shard of a finished extraction."""
    folder = Path(folder)
    index = read_index(folder)
    table: Dict[str, torch.Tensor] = {}
    for item in index["files"]:
        try:
            keys, features, _ = read_shard_features(folder / item["file"])
        except Exception as err:  # noqa: BLE001 - absent, torn or foreign: whatever safetensors raises
            raise FeaturesError(_gone(folder, item, f"{type(err).__name__}: {err}")) from None
        table.update(zip(keys, features))
    return table
