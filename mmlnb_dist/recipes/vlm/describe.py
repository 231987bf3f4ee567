"""Description generation: a `txt` description for every patch of a shard set, distributed, batched, resumable.

    out = run_describe(cfg, vlm="tiny", adapter="runs/x/adapter", shards_in="shards/nbpath",
                       out="shards/nbpath-described")

The work is `data.map_shard_set` with a function that describes a batch of images: ranks take whole shards,
an output shard appears only when complete, finished batches are journaled so a killed run continues where
it stopped, and the output holds every input sample exactly once (see that module). With greedy decoding a
resumed run writes exactly the descriptions of an uninterrupted one.

Output: a shard set with the same split/shard file names and sample keys, images, `cls` and `json`; `txt` is
the generated description and a pre-existing description moves to `json["reference_description"]`. Its
manifest records model, adapter sha256, prompt and generation settings under `provenance["describe"]`.

One job per output: rank 0 holds a `FolderLock` on `out` for the whole run. The same record is kept in
`out/provenance.json` from the first batch on, and a run continuing an output made with another base model,
adapter (digest of every adapter file), prompt, generation settings, dtype or input (manifest digest) is refused,
naming what differs; `restart=True` (`describe --restart`) deletes the old output and starts over. The input
shards are checked against their manifest first (`data.loader.preflight`); an undecodable image is skipped,
listed under the output manifest's `skipped` and counted against `data.loader.max_bad_sample_rate`;

`quality_report.json` holds description-length statistics, the share of empty and repeated outputs and,
where references exist, ROUGE-L and BLEU-4 against them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import torch

from ...core.distributed import DistEnv, destroy_process_group, init_process_group
from ...core.errors import UserError
from ...core.runlock import FolderLock, ReadLock, is_lock_file
from ...data.images import decode_image, image_member, undecodable
from ...data.map import MAP_OUTPUTS, PROVENANCE_FILE, SkipSample, map_shard_set
from ...data.preflight import check_shard_files
from ...data.shardset import ShardSet
from . import model as V
from .merge import fine_tune_sha256
from .weights_identity import model_folder, weights_identity
from .quality import QUALITY_FILE, format_report, quality_report
from .source import check_vlm_loadable
from .preflight import check_describe_ready, drop_claim_without_output

if TYPE_CHECKING:
    from ...config import Config
    from .config import VLMConfig

log = logging.getLogger(__name__)


MAX_ASPECT_RATIO = 200
"""Qwen2.5-VL's processor refuses an image whose long side is more than this many times its short side
(transformers' `smart_resize`)."""


class Describer:
    """Loads the VLM (+ adapter) once and describes batches of images exactly as fine-tuning saw them (same
    prompt, chat template and pixel bounds)."""

    def __init__(self, vcfg: "VLMConfig", vlm: str, adapter: Optional[str], device: torch.device, precision: str):
        self.vcfg, self.device = vcfg, device
        self.dtype = describe_dtype(device, precision)
        model, self.processor = V.load_vlm(vlm, min_pixels=vcfg.min_pixels, max_pixels=vcfg.max_pixels,
                                           dtype=self.dtype, seed=vcfg.tiny_seed, cache_dir=vcfg.cache_dir,
                                           tiny_vision=vcfg.tiny_vision)
        if adapter:
            model = V.load_adapter(model, adapter)
            if vcfg.generation.merge_adapter:
                model = model.merge_and_unload()
        self.model = model.to(device).eval()

    def describe(self, images: List[Any]) -> List[str]:
        v = self.vcfg
        return V.generate_descriptions(self.model, self.processor, images, v.prompt, v.generation,
                                       device=self.device, model_dtype=self.dtype)


def described(sample: Dict[str, Any], text: str) -> Dict[str, str]:
    """A sample's new members: the generated `txt`, and its `json` with the old description kept as reference."""
    meta = json.loads(sample["json"]) if "json" in sample else {}
    if "txt" in sample:
        meta["reference_description"] = sample["txt"].decode("utf-8")
    return {"json": json.dumps(meta, sort_keys=True, ensure_ascii=False), "txt": text}


class _DescribeBatches:
    """The map function: loads the model on the first batch that needs it (none, when all is done already)."""

    def __init__(self, make: Any):
        self.make = make
        self.describer: Optional[Describer] = None
        self.load_seconds = 0.0

    def __call__(self, samples: List[Dict[str, Any]]) -> List[Any]:
        results: List[Any] = [unreadable(s) for s in samples]
        good = [i for i, r in enumerate(results) if r is None]
        if good:
            if self.describer is None:
                t0 = time.perf_counter()
                self.describer = self.make()
                self.load_seconds = time.perf_counter() - t0
            texts = self.describer.describe([samples[i][image_member(samples[i])] for i in good])
            for i, text in zip(good, texts):
                results[i] = described(samples[i], text)
        return results


def unreadable(sample: Dict[str, Any]) -> Optional[SkipSample]:
    """A `SkipSample` naming why the sample's image cannot be described, or None when it decodes."""
    ext = image_member(sample)
    if ext is None:
        return SkipSample("no image member")
    try:
        width, height = decode_image(sample[ext]).size
    except Exception as err:  # any decoder error means: this image is unreadable
        return SkipSample(undecodable(err))
    reason = too_elongated(width, height)
    return SkipSample(reason) if reason else None


def too_elongated(width: int, height: int) -> Optional[str]:
    """Why Qwen2.5-VL's processor refuses an image of this size (failing its whole batch), or None."""
    if max(width, height) / max(min(width, height), 1) > MAX_ASPECT_RATIO:
        return f"aspect ratio of {width}x{height} above {MAX_ASPECT_RATIO}:1, which Qwen2.5-VL's processor refuses"
    return None


def describe_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The dtype the VLM generates in: `distributed.precision` on a GPU, float32 on the CPU."""
    return V.dtype_for(precision) if device.type == "cuda" else torch.float32


def _config_digest(folder: Path) -> Optional[str]:
    config = folder / "config.json"
    return hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None


def provenance(cfg: "Config", vlm: str, adapter: Optional[str], source: ShardSet, world_size: int,
               dtype: torch.dtype = torch.float32) -> Dict[str, Any]:
    v, gen = cfg.vlm, cfg.vlm.generation
    # "draw": how samples are drawn (per image, `sampling.py`); an output sampled per batch is not resumed with it
    sampling = V.decoding_settings(gen)
    if sampling["do_sample"]:
        sampling["draw"] = "per-image-gumbel"
    settings = {"preset": gen.preset, "max_new_tokens": gen.max_new_tokens, "batch_size": gen.batch_size, **sampling}
    if adapter and not gen.merge_adapter:  # bf16 rounds W + BA and W x + B A x apart; the default (True) left out
        settings["merge_adapter"] = False  # (so that outputs recorded before this key continue)
    resolved = V.resolve_model_path(vlm, v.tiny_seed, v.cache_dir, v.tiny_vision)
    return {"source": str(source.root), "source_manifest_sha256": source.digest, "model": vlm,
            "resolved_model": resolved, "model_config_sha256": _config_digest(model_folder(vlm, resolved)),
            "tiny_seed": v.tiny_seed, "tiny_vision": v.tiny_vision,
            # the weights' bytes (and a hub id's cached commit), not their mtimes: a copy of the same weights
            # continues, other weights under kept times do not (`weights_identity`); `tiny` is told by its seed and
            # tower (its cache may be rebuilt)
            **(weights_identity(vlm, resolved) if vlm != V.TINY else {}),
            "adapter": str(adapter) if adapter else None, "adapter_sha256": fine_tune_sha256(vlm, adapter),
            "prompt": v.prompt, "min_pixels": v.min_pixels, "max_pixels": v.max_pixels, "generation": settings,
            "world_size": world_size,
            # greedy text differs between bf16, fp16 and fp32, so continuing an output in another dtype would mix
            # two decodings; float32 is left out of the record so outputs made before dtype was recorded continue
            **({"dtype": str(dtype).replace("torch.", "")} if dtype != torch.float32 else {})}


RESUME_MAY_CHANGE = ("describe.world_size", "describe.source", "describe.adapter", "describe.resolved_model",
                     "describe.generation.batch_size")
"""Provenance keys a resumed describe may change: ranks, where the same input/adapter/model files live (their
digests must still match), and the batch size: a description does not depend on its batch (left padding, per-image
draws), and a describe that ran out of memory is told to continue with a smaller one (`cli.DESCRIBE_MEMORY`)."""


def resume_may_change(made: Dict[str, Any]) -> tuple:
    """`RESUME_MAY_CHANGE`, and the model's name and hub commit when `made` (a `provenance()`) records its weights'
    digest: the same bytes moved or copied to another folder (or a hub id's snapshot copied out of the cache, which
    has no commit, or a newer commit that left the weights alone) write the same text, and the digest, which must
    still match, tells other weights apart."""
    return RESUME_MAY_CHANGE + (("describe.model", "describe.model_revision") if made.get("model_weights") else ())


def run_describe(cfg: "Config", vlm: Optional[str] = None, adapter: Optional[str] = None,
                 shards_in: Optional[Path] = None, out: Optional[Path] = None,
                 env: Optional[DistEnv] = None, progress: bool = True, restart: bool = False) -> Dict[str, Any]:
    """Describe every sample of `shards_in` into `out`. Defaults: vlm = cfg.vlm.model, shards_in =
    cfg.data.shards, out = `<shards_in>-described`. `restart`: delete an earlier output of `out` first instead
    of continuing it. Returns out, counts, samples/s and the quality report."""
    env = env or DistEnv.from_environment()
    vlm = vlm or cfg.vlm.model
    with ReadLock(Path(shards_in or cfg.data.shards), "describe") if env.is_main else nullcontext():
        source = ShardSet.open(shards_in or cfg.data.shards)  # (a rebuild under it is refused while it runs)
        out = Path(out or default_out(source))
        check_out_folder(out, source, restart, adapter)
        lc = cfg.data.loader
        check_shard_files(source, lc.preflight, rank=env.rank, world_size=env.world_size)  # before any work
        check_vlm_loadable(vlm, "--vlm" if vlm != cfg.vlm.model else "vlm.model")
        check_describe_ready(cfg.vlm, vlm, adapter)  # what the first batch would meet, before the claim
        lock = FolderLock(out, "describe").acquire() if env.is_main else None
        try:
            return _describe_locked(cfg, vlm, adapter, source, out, env, progress, restart)
        finally:
            if lock is not None:
                lock.release()


def default_out(source: ShardSet) -> Path:
    """`<shards>-described` beside the input (`described_beside`)."""
    return described_beside(source.root)


def described_beside(shards: Path) -> Path:
    """`<shards>-described`, beside the shard set (describe's and the pipeline's default output); `.` or `..` named
    it `.-described` inside the input (or `..-described` in the current folder), so such a name is resolved first."""
    shards = Path(shards)
    return Path(f"{shards.resolve() if shards.name in ('', '..') else shards}-described")


def check_out_folder(out: Path, source: ShardSet, restart: bool = False, adapter: Optional[str] = None) -> None:
    """Refuse (UserError) an `--out` that is a file, the input shard set itself, a folder inside it or holding it
    (the descriptions landed among the input's files), one inside `adapter` (its digest changed), or a folder
    holding files that describe does not write, before any work (the folder lock met the first two as a traceback,
    or as the user's own run holding the input; the shard set was written in among the others). With `restart`,
    the last is `data.map.clear_output`'s to refuse."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder (a new one, or an earlier describe output to "
                        f"continue)")
    if out.resolve() == source.root.resolve():
        raise UserError(f"--out {out} is the input shard set (--shards {source.root}): describe writes a new shard "
                        f"set; give another folder, such as {default_out(source)}")
    inside = out.resolve().is_relative_to(source.root.resolve())
    if inside or source.root.resolve().is_relative_to(out.resolve()):
        where = f"is inside the input shard set --shards {source.root}" if inside else \
            f"holds the input shard set --shards {source.root}"
        raise UserError(f"--out {out} {where}: the descriptions would land among its files (where `shards verify` "
                        f"and a rebuild of the input meet them); give a folder beside it, such as "
                        f"{default_out(source)}")
    if adapter and out.resolve().is_relative_to(Path(adapter).resolve()):  # (its digest covers every file under it)
        raise UserError(f"--out {out} is inside --adapter {adapter}: the shard set would become part of the adapter "
                        f"and change its fingerprint (adapter_sha256), which the output's provenance records; give a "
                        f"folder outside it, such as {default_out(source)}")
    ours = set(MAP_OUTPUTS) | {QUALITY_FILE}  # (as data.map.clear_output tells its own files from others')
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours and not is_lock_file(p.name)
                     and not p.name.endswith((".tar", ".partial", ".tmp"))) if out.is_dir() and not restart else []
    if foreign:
        raise UserError(f"--out {out} holds {', '.join(foreign[:5])}, which describe does not write: it is no "
                        f"describe output; give a new or empty folder (or an earlier describe output to continue)")


def _describe_locked(cfg: "Config", vlm: str, adapter: Optional[str], source: ShardSet, out: Path, env: DistEnv,
                     progress: bool, restart: bool) -> Dict[str, Any]:
    lc = cfg.data.loader
    owns_group = env.is_distributed and not torch.distributed.is_initialized()
    init_process_group(env, cfg.distributed)
    try:
        fn = _DescribeBatches(lambda: Describer(cfg.vlm, vlm, adapter, env.device, cfg.distributed.precision))
        dtype = describe_dtype(env.device, cfg.distributed.precision)
        made_by = {"describe": provenance(cfg, vlm, adapter, source, env.world_size, dtype)}
        claims_now = env.is_main and (restart or not (out / PROVENANCE_FILE).is_file())
        try:
            mapped = map_shard_set(source, out, fn, env=env, batch_size=cfg.vlm.generation.batch_size,
                                   provenance=made_by, record=made_by, allow=resume_may_change(made_by["describe"]),
                                   restart=restart,
                                   lock=False, max_bad_sample_rate=lc.max_bad_sample_rate,
                                   max_member_bytes=lc.max_member_bytes, progress=progress, desc="describe",
                                   reports=(QUALITY_FILE,), has_descriptions=True)
        except BaseException:
            if claims_now:  # a claim with nothing behind it would refuse the corrected rerun
                drop_claim_without_output(out)
            raise
        result: Dict[str, Any] = {"out": str(out)}
        if env.is_main:
            report = quality_report(ShardSet.open(out), naming_keywords(source))
            (out / QUALITY_FILE).write_text(json.dumps(report, indent=2) + "\n")
            log.info("%s", format_report(report))
            seconds = mapped["seconds"] - fn.load_seconds  # generation only: the model loads on the first batch
            _say_skipped(mapped["skipped"], mapped["num_samples"] + len(mapped["skipped"]), out)
            # what the VLM described in this run: not the samples it skipped (undecodable, too elongated), which
            # were counted as described and in the rate, though no text was generated for them
            now = mapped["processed_now"] - mapped["skipped_now"]
            result.update({"num_samples": mapped["num_samples"], "skipped": len(mapped["skipped"]),
                           "described_now": now,
                           "seconds": seconds, "load_seconds": fn.load_seconds, "quality": report,
                           # none when nothing was described now (a rerun of a finished output): not 0/s
                           "samples_per_s": (now / seconds if now and seconds > 0 else None)})
            _track(cfg, source, out, result)
        return result
    finally:
        if owns_group:
            destroy_process_group()


def _say_skipped(skipped: List[Dict[str, str]], total: int, out: Path, shown: int = 5) -> None:
    """Name the samples left undescribed (listed in the manifest, but the summary's count alone hid them: their
    missing description surfaced only in a later stage)."""
    if skipped:
        first = "; ".join(f"{s['key']} ({s['shard']}): {s['reason']}" for s in skipped[:shown])
        log.warning("%d of %d samples not described and left out of %s (listed in its manifest.json 'skipped'): "
                    "%s%s", len(skipped), total, out, first, f"; and {len(skipped) - shown} more"
                    if len(skipped) > shown else "")


def naming_keywords(source: ShardSet) -> Optional[Dict[str, Any]]:
    """The synthetic set's class phrases when `source` has its classes (the embedded demo; the report's
    class-naming rate then says whether descriptions carry the class), else None: real descriptions use other
    words, and a keyword rate on them would mislead."""
    from ...data.synthetic import CLASS_KEYWORDS

    return dict(CLASS_KEYWORDS) if source.classes and set(source.classes) <= set(CLASS_KEYWORDS) else None


def _track(cfg: "Config", source: ShardSet, out: Path, result: Dict[str, Any]) -> None:
    """Log the describe run (rank 0): its config, the input shard set, the quality figures and report."""
    from ...core.tracking import build_logger

    run_dir = Path(cfg.run.output_dir) / f"{cfg.run.name}-describe"
    logger = build_logger(cfg.tracking, cfg.run, 0, run_dir, "describe", config=cfg, datasets=source.dataset_specs(),
                          tags={"output": str(out)})
    q = result["quality"]
    metrics = {"describe/samples": float(result["num_samples"]), "describe/words_mean": q["words"]["mean"],
               "describe/empty_share": q["empty_share"], "describe/repeated_share": q["repeated_share"],
               "describe/distinct": float(q["distinct"])}
    if result["samples_per_s"]:
        metrics["describe/samples_per_s"] = float(result["samples_per_s"])
    for name in ("rouge_l", "bleu4"):  # against the reference descriptions, where the input had them
        if q.get("reference"):
            metrics[f"describe/{name}"] = float(q["reference"][name])
    for split, rate in ((q.get("class_naming") or {}).get("by_split") or {}).items():
        metrics[f"describe/class_naming_{split}"] = float(rate)
    logger.log_metrics(metrics, step=0)
    logger.log_artifact(out / QUALITY_FILE)
    logger.log_artifact(out / "manifest.json")
    logger.close()


def image_describer(model: str, adapter: Optional[str], vcfg: "VLMConfig",
                    precision: str = "fp32") -> Callable[[List[Any]], List[str]]:
    """The VLM loaded once, as a function from images (bytes or PIL) to their descriptions, generated exactly as
    `describe` does with the `vlm` section the adapter was trained with (prediction passes the fine-tuning run's
    section); `predict` calls it once per chunk of its inputs."""
    describer = Describer(vcfg, model, str(adapter) if adapter else None, DistEnv.from_environment().device,
                          precision)
    bs = vcfg.generation.batch_size

    def describe(images: List[Any]) -> List[str]:
        texts: List[str] = []
        for start in range(0, len(images), bs):
            texts.extend(describer.describe(list(images[start:start + bs])))
        return texts

    return describe


def describe_images(images: List[Any], model: str, adapter: Optional[str], vcfg: "VLMConfig",
                    precision: str = "fp32") -> List[str]:
    """Descriptions for images, generated exactly as `describe` does (`image_describer`)."""
    return image_describer(model, adapter, vcfg, precision)(images)
