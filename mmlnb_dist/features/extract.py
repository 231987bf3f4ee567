"""Image features for every sample of a shard set, extracted once: distributed, batched, exactly once, resumable.

    result = extract_features(ImageEncoderConfig(name="uni2-h"), ShardSet.open("shards/nbpath"),
                              "features/nbpath-uni2-h", env=env, dist=cfg.distributed, seed=cfg.run.seed)

- Ranks take whole input shards round-robin by their global index (rank r: shards r, r + W, ...), as
  `data.map.map_shard_set` and `describe` do: no shard is shared, so every sample is encoded by exactly one
  rank, and each shard's features are written by one process in one atomic rename (`store.write_shard_features`).
- Batches are fixed offsets in the shard; images are decoded by a small thread pool one batch ahead of the
  encoder. The encoder runs in the precision `distributed.precision` asks for (cast to bf16/fp16 as DeepSpeed
  casts a training run's model, or fp32; fp16 needs a GPU, as for training); the precision is part of the
  features' identity; features are stored as float32.
- A rerun removes a killed run's half-written temporaries, skips shards whose file is complete (a torn or
  stale file is redone) and refuses to continue an output made with different settings
  (`core.provenance.check_or_record`: encoder, weights digest, transform, shard set digest, precision, dtype and
  package versions), naming what differs.
- Rank 0 then checks every input sample is in exactly one file (or listed as skipped: an undecodable image,
  counted against `max_bad_sample_rate`) and writes `index.json`, which marks the extraction finished.
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

from ..core.distributed import DistEnv, all_gather_object, barrier, destroy_process_group, init_process_group
from ..core.engine import check_precision, match_buffers_to_parameters, seed_everything
from ..core.errors import UserError
from ..core.files import replace_text, sha256_file
from ..core.progress import progress_bar
from ..core.provenance import check_or_record
from ..core.runlock import FolderLock, ReadLock
from ..core.sections import DistributedConfig
from ..data.build import discard_empty_output
from ..data.ledger import BadSample, BadSampleRateError, exceeds, rate_message
from ..data.preprocess import ImageSamplePreprocess, SampleContext
from ..data.reader import DEFAULT_MAX_MEMBER_BYTES, iter_shard_samples
from ..data.shardset import ShardError, ShardSet
from ..models.config import ImageEncoderConfig
from ..models.encoders import build_image_encoder, module_fingerprint
from . import store
from .image_digests import images_sha256, recorded_images, sample_image_sha256

log = logging.getLogger(__name__)

Summary = Dict[str, Any]


def extraction_image_size(encoder: Any, image_size: Optional[int], loader_image_size: int) -> int:
    """The side images are resized to: the one asked for, else the encoder's own input size, else the loader's."""
    return int(image_size or encoder.input_size or loader_image_size)


def check_image_size(encoder: Any, size: int) -> None:
    """Refuse a side the encoder cannot take (a ViT with fixed position embeddings: h-optimus-0, uni at 224 px)
    before anything is written, by one forward pass on a blank image; an encoder without a declared input size,
    or asked for its own, takes any size and is not probed."""
    if not encoder.input_size or size == encoder.input_size:
        return
    try:
        with torch.no_grad():
            encoder(torch.zeros(1, 3, size, size))
    except Exception as err:  # noqa: BLE001 - whatever the library raises (timm: AssertionError) means "not this size"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        # (not "takes only N px": some take any multiple of their patch size, uni2-h 42 px but not 40)
        raise UserError(f"--image-size {size}: image encoder '{encoder.name}' cannot take {size} x {size} px images "
                        f"({reason}); leave --image-size out to use its own {encoder.input_size}") from None


CAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def extraction_precision(device: torch.device, asked: str) -> str:
    """The precision the encoder runs in: `asked` (distributed.precision), on the CPU too, because a run of that
    precision computes in it there (DeepSpeed casts the model to bf16 on the CPU as well): features made in fp32
    instead were refused by that run, and extracting again gave fp32 again. fp16 on the CPU is refused before
    this (`core.engine.check_precision`, as for a training run)."""
    return asked if asked in CAST_DTYPES else "fp32"


def cast_as_training_does(encoder: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The encoder in `precision` as a fusion run's DeepSpeed engine holds it: parameters cast to bf16/fp16, then
    the floating buffers of modules with parameters (batch norm statistics, `core.engine.build_engine`), no
    autocast. Autocast (fp32 weights, batch norm and softmax in fp32) gives other numbers (efficientnet_lite0 in
    bf16: 3.5% mean relative L2 from the cast model's), so features made under it would not be those of the
    same run from images."""
    if precision in CAST_DTYPES:
        for param in encoder.parameters():
            param.data = param.data.to(CAST_DTYPES[precision])
        match_buffers_to_parameters(encoder)
    return encoder


class _ShardEncoder:
    """Decodes and encodes the samples of one shard at a time, batch by batch."""

    def __init__(self, encoder: torch.nn.Module, preprocess: ImageSamplePreprocess, device: torch.device,
                 batch_size: int, threads: int, precision: str):
        self.encoder, self.preprocess, self.device = encoder, preprocess, device
        self.batch_size = batch_size
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="decode")
        self.ctx = SampleContext(seed=0, epoch=0, train=False)
        self.precision = precision

    def _decode(self, raw: Dict[str, Any]) -> Union[Dict[str, Any], str]:
        try:
            return self.preprocess.decode(raw, self.ctx)
        except ValueError as err:  # an undecodable image: skipped and listed, not fatal
            return str(err)

    def _submit(self, batch: List[Dict[str, Any]]) -> List[Future]:
        return [self.pool.submit(self._decode, raw) for raw in batch]

    @torch.no_grad()
    def encode_shard(self, samples: List[Dict[str, Any]], shard: str,
                     on_batch: Any) -> Tuple[List[str], torch.Tensor, List[Dict[str, str]]]:
        keys: List[str] = []
        parts: List[torch.Tensor] = []
        skipped: List[Dict[str, str]] = []
        starts = list(range(0, len(samples), self.batch_size))
        pending = self._submit(samples[0:self.batch_size]) if starts else []
        for n, start in enumerate(starts):
            decoded = [f.result() for f in pending]
            raws = samples[start:start + self.batch_size]
            if n + 1 < len(starts):  # decode the next batch while this one is encoded
                nxt = starts[n + 1]
                pending = self._submit(samples[nxt:nxt + self.batch_size])
            good = [d for d in decoded if isinstance(d, dict)]
            skipped += [{"shard": shard, "key": raw["__key__"], "reason": d}
                        for raw, d in zip(raws, decoded) if isinstance(d, str)]
            if good:
                batch = self.preprocess.finalize(self.preprocess.collate(good))
                # normalised in fp32 on the device by `finalize`, then cast, as the fusion recipe's batches are
                feats = self.encoder(batch["image"].to(CAST_DTYPES.get(self.precision, torch.float32)))
                parts.append(feats.float().cpu())
                keys += batch["key"]
            on_batch(len(raws))
        dim = parts[0].shape[1] if parts else 0
        return keys, (torch.cat(parts) if parts else torch.zeros(0, dim)), skipped

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _refuse_foreign_out(out: Path, source: ShardSet) -> None:
    """`out` must be new, empty, or hold nothing but what an extraction of `source` writes there: not a file, nor
    a folder of other things (a run folder, another shard set), among whose files the features would be written."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; features go to a folder of their own (a new or empty one)")
    if not out.is_dir():
        return
    ours = {store.PROVENANCE_FILE, store.INDEX_FILE} | {store.feature_file(out, e["file"]).name
                                                         for _, _, e in source.entries()}
    # Lock files are hidden; a killed write leaves `<one of ours>.<pid>.tmp` (`store.remove_temporaries` removes
    # it). Any other `.tmp` is another tool's file, among which the features must not go.
    others = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith(".")
                    and not store.is_own_temporary(p.name, ours))
    if others:
        raise UserError(f"--out {out} holds other files than extracted features of {source.root} "
                        f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}); give a new or empty folder")


def _claim(out: Path, record: Mapping[str, Any]) -> bool:
    """Record what these features are, or refuse other settings; True when this run made the record."""
    out.mkdir(parents=True, exist_ok=True)
    new = not (out / store.PROVENANCE_FILE).is_file()
    if not new:
        store.read_record(out)  # a damaged record is refused as such, not as a JSON traceback
    else:  # an index left without its record is another run's: until this one indexes, the folder is unfinished
        (out / store.INDEX_FILE).unlink(missing_ok=True)  # (else a kill leaves old files read as this record's)
    check_or_record(out / store.PROVENANCE_FILE, record, what=f"{out} (extracted features)",
                    remedy=f"Extract into another folder, or delete {out} to start over.")
    return new


def _drop_claim_without_features(out: Path) -> None:
    """After a failure: a record this run made, with no feature file behind it, goes, so that it does not refuse
    the corrected rerun for settings that produced nothing."""
    if not any(out.glob("*.safetensors")):
        (out / store.PROVENANCE_FILE).unlink(missing_ok=True)


def _verify_and_index(source: ShardSet, out: Path, summaries: List[Summary], record: Mapping[str, Any],
                      max_bad_sample_rate: float) -> Dict[str, Any]:
    """Rank 0: one complete file per input shard, each key once across files; the bad-sample rate; index.json."""
    by_shard = {s["shard"]: s for s in summaries}
    entries = source.entries()
    missing = [e["file"] for _, _, e in entries if e["file"] not in by_shard]
    if missing:
        raise ShardError(f"{out}: no features for input shards {missing[:5]} after every rank finished")
    seen: Dict[str, str] = {}
    for _, _, entry in entries:
        for key in store.read_shard_keys(out / by_shard[entry["file"]]["file"]):
            if key in seen:
                raise ShardError(f"{out}: key {key} extracted twice ({seen[key]} and {entry['file']})")
            seen[key] = entry["file"]
    skipped = [s for e in entries for s in by_shard[e[2]["file"]]["skipped"]]
    total = sum(int(e["num_samples"]) for _, _, e in entries)
    if exceeds(len(skipped), total, max_bad_sample_rate):
        bad = [BadSample(s["shard"], s["key"], s["reason"], 0) for s in skipped]
        raise BadSampleRateError("features extract: " + rate_message(bad, total, max_bad_sample_rate))
    files = [{k: by_shard[e["file"]][k] for k in ("file", "shard", "num_features")} for _, _, e in entries]
    dims = {by_shard[e["file"]]["dim"] for _, _, e in entries if by_shard[e["file"]]["num_features"]}
    index = {"format": store.FORMAT, "num_features": len(seen), "num_skipped": len(skipped),
             "dim": dims.pop() if len(dims) == 1 else None, "files": files, "skipped": skipped,
             "encoder": record["identity"]["encoder"]["name"],
             # what a run on another shard set (the same images, other descriptions) is compared with
             "images_sha256": images_sha256(recorded_images(out, files))}
    replace_text(out / store.INDEX_FILE, json.dumps(index, indent=2) + "\n")
    return index


def extract_features(encoder_cfg: ImageEncoderConfig, source: Union[ShardSet, str, Path], out: Union[str, Path], *,
                     env: Optional[DistEnv] = None, dist: Optional[DistributedConfig] = None, seed: int = 0,
                     batch_size: int = 64, image_size: Optional[int] = None, loader_image_size: int = 224,
                     decode_threads: int = 2, max_bad_sample_rate: float = 0.01,
                     max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES, progress: bool = True) -> Dict[str, Any]:
    """Extract `encoder_cfg`'s features of every sample of `source` into `out` (see the module docstring).

    Collective: every rank calls it. `seed` seeds the RNG before the encoder is built (a randomly initialised
    encoder then has the weights the fusion recipe builds with the same `run.seed`). Returns on every rank
    {"out", "processed_now", "seconds", "samples_per_s"}; rank 0 also gets the index."""
    env = env or DistEnv.from_environment()
    source = source if isinstance(source, ShardSet) else ShardSet.open(source)
    out = Path(out)
    precision = store.run_precision(dist or DistributedConfig())  # (a bad deepspeed_config stops before any lock)
    check_precision(dist or DistributedConfig(), env.device)  # fp16 on the CPU: refused as a training run is
    if out.resolve() == source.root.resolve():
        raise UserError(f"--out {out}: features must go to another folder than the shard set")
    if source.root.resolve() in out.resolve().parents:  # `shards build` into the set replaces its folder whole
        raise UserError(f"--out {out} is inside the shard set {source.root}: a rebuild of the set deletes it with "
                        f"the features; give a folder beside it (default: <shards>-features-<encoder>)")
    if env.is_main:  # (rank 0 alone, as it alone takes the folder: a launcher stops the others when it exits)
        _refuse_foreign_out(out, source)
    reading = ReadLock(source.root, "features extract").acquire() if env.is_main else None  # nothing rebuilds it
    try:
        lock = FolderLock(out, "features extract").acquire() if env.is_main else None
    except BaseException:
        if reading is not None:
            reading.release()
        raise
    owns_group = env.is_distributed and not torch.distributed.is_initialized()
    init_process_group(env, dist or DistributedConfig())
    try:
        if lock is not None:  # (before `_extract`'s first collective: no rank writes yet)
            store.remove_temporaries(out, [e["file"] for _, _, e in source.entries()])
        return _extract(encoder_cfg, source, out, env=env, seed=seed, precision=precision, batch_size=batch_size,
                        image_size=image_size, loader_image_size=loader_image_size, decode_threads=decode_threads,
                        max_bad_sample_rate=max_bad_sample_rate, max_member_bytes=max_member_bytes,
                        progress=progress)
    except BaseException:
        if lock is not None:
            discard_empty_output(out, lock)  # stopped before writing anything (an unknown encoder): no folder left
        raise
    finally:
        if owns_group:
            destroy_process_group()
        if lock is not None:
            lock.release()
        if reading is not None:
            reading.release()


def _extract(encoder_cfg: ImageEncoderConfig, source: ShardSet, out: Path, *, env: DistEnv, seed: int, precision: str,
             batch_size: int, image_size: Optional[int], loader_image_size: int, decode_threads: int,
             max_bad_sample_rate: float, max_member_bytes: int, progress: bool) -> Dict[str, Any]:
    seed_everything(seed)
    encoder = build_image_encoder(encoder_cfg).eval()
    digest = module_fingerprint(encoder.name, encoder.body)
    size = extraction_image_size(encoder, image_size, loader_image_size)
    check_image_size(encoder, size)  # (every rank: the same encoder and size, the same answer)
    computed_in = extraction_precision(env.device, precision)
    record = {"identity": store.feature_identity(encoder, digest, size, source, computed_in),
              "compute": {"dtype": store.COMPUTE_DTYPES[computed_in], "versions": store.package_versions()}}
    refusal: Optional[Tuple[type, str]] = None
    claimed = False
    if env.is_main:
        try:
            claimed = _claim(out, record)
        except UserError as err:
            refusal = (type(err), str(err))
    try:
        refusal = all_gather_object(env, refusal)[0]  # every rank stops when rank 0 refused, before any work
        if refusal is not None:
            raise refusal[0](refusal[1])
        return _encode_all(encoder, digest, size, record, source, out, env=env, precision=precision,
                           batch_size=batch_size,
                           decode_threads=decode_threads, max_bad_sample_rate=max_bad_sample_rate,
                           max_member_bytes=max_member_bytes, progress=progress)
    except BaseException:
        if claimed:
            _drop_claim_without_features(out)
        raise


def _encode_all(encoder: Any, digest: str, size: int, record: Mapping[str, Any], source: ShardSet, out: Path, *,
                env: DistEnv, precision: str, batch_size: int, decode_threads: int, max_bad_sample_rate: float,
                max_member_bytes: int, progress: bool) -> Dict[str, Any]:
    """This rank's shards encoded and written (finished ones skipped); rank 0 then verifies and indexes all."""
    mine = source.entries()[env.rank::env.world_size]
    stamp = store.identity_sha256(record["identity"])  # a file made otherwise (its record deleted) is redone
    summaries: List[Summary] = []
    todo = []
    for split, _, entry in mine:
        done = store.finished_shard(store.feature_file(out, entry["file"]), entry, stamp)
        if done is not None:
            summaries.append(done)
        else:
            todo.append((split, entry))
    absent = [e["file"] for _, e in todo if not (source.root / e["file"]).is_file()]
    if absent:  # before any work, not at the missing shard's turn
        raise ShardError(f"input shards missing from {source.root}: {', '.join(absent[:5])}"
                         f"{', ...' if len(absent) > 5 else ''}; restore them or rebuild the shard set")
    total = sum(int(e["num_samples"]) for _, e in todo)
    log.info("features extract: %s (%d-d, weights %s) at %d px on %s in %s; %d of %d shards to do here (rank %d of "
             "%d)", encoder.name, encoder.out_dim, digest, size, env.device, record["identity"]["precision"], len(todo),
             len(mine), env.rank, env.world_size)
    bar = progress_bar(total=total, unit="sample", desc=f"extract[rank {env.rank}/{env.world_size}]",
                       enabled=progress and env.is_main, dynamic_ncols=True)
    work = _ShardEncoder(cast_as_training_does(encoder.to(env.device), record["identity"]["precision"]),
                         ImageSamplePreprocess(size, None, augment=False, mean=encoder.mean, std=encoder.std,
                                               text=False, device=env.device), env.device, batch_size, decode_threads,
                         record["identity"]["precision"])
    t0 = time.perf_counter()
    try:
        for split, entry in todo:
            if sha256_file(source.root / entry["file"]) != entry["sha256"]:  # (its features would claim that sha)
                raise ShardError(f"input shard {source.root / entry['file']} is not the one its manifest entry "
                                 f"names (other sha256: changed in place since the build); restore or rebuild it "
                                 f"(`mmlnb-dist shards verify {source.root}` checks every shard)")
            samples = list(iter_shard_samples(source.root / entry["file"], max_member_bytes))
            if len(samples) != int(entry["num_samples"]):
                raise ShardError(f"input shard {source.root / entry['file']} holds {len(samples)} samples, its "
                                 f"manifest entry says {entry['num_samples']}; restore or rebuild it")
            keys, feats, skipped = work.encode_shard(samples, entry["file"], bar.update)
            path = store.feature_file(out, entry["file"])
            store.write_shard_features(path, keys, feats, shard_sha256=entry["sha256"], skipped=skipped, split=split,
                                       images={s["__key__"]: sample_image_sha256(s) for s in samples}, identity=stamp)
            summaries.append({"file": path.name, "shard": entry["file"], "num_features": len(keys),
                              "dim": int(feats.shape[1]), "skipped": skipped})
    finally:
        work.close()
        bar.close()
    seconds = time.perf_counter() - t0
    gathered = all_gather_object(env, {"summaries": summaries, "processed": total, "seconds": seconds})
    processed = sum(g["processed"] for g in gathered)
    slowest = max(g["seconds"] for g in gathered)
    result: Dict[str, Any] = {"out": str(out), "processed_now": processed, "seconds": slowest,
                              "samples_per_s": processed / slowest if processed and slowest > 0 else None,
                              "encoder": encoder.name, "weights_digest": digest, "image_size": size}
    if env.is_main:
        index = _verify_and_index(source, out, [s for g in gathered for s in g["summaries"]], record,
                                  max_bad_sample_rate)
        result.update({"num_features": index["num_features"], "num_skipped": index["num_skipped"],
                       "dim": index["dim"]})
        log.info("features extract: %d features (%d skipped) in %s; %d computed now in %.1fs",
                 index["num_features"], index["num_skipped"], out, processed, slowest)
    barrier(env)
    return result
