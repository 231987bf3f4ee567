"""Slides to shards: find slides and labels, plan, tile each slide in parallel (resumably), write shards.

    report = tile_slides(cfg.slides, cfg.data.build, slides="wsi/", labels="slides.csv", out="shards/wsi",
                         classes=cfg.data.classes)

Slides are tiled independently (a pool process or a Ray task each) into `<out>.work/slides/<id>/`; a rerun
skips slides whose staged result matches the current options. The shards are then written from the staged
tiles by `build_shards` only, so they are the same bytes whether the run was interrupted or not.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..core.progress import progress_bar
from ..data.config import BuildConfig
from .config import SlidesConfig
from .inputs import (MASK_SUFFIX, TilingInputError, check_mask_dir, find_slides, mask_path, match_inputs,
                     no_slide_files, no_usable_slide, problem_record, qc_file_name, read_labels,
                     refuse_file_out)
from .ray_tasks import ray_results
from .slide_task import (TILES, SlideJob, fingerprint, load_result, process_slide, refuse_upsampling, reusable,
                         safe_key)

log = logging.getLogger(__name__)

PROBLEM_STATUSES = ("failed", "no_tissue", "no_tiles", "missing_slide", "unlabelled", "bad_label")


@dataclass
class TilingReport:
    """Per-slide results (in slide-id order), the manifest written, and where the QC outputs are."""

    results: List[Dict[str, Any]]
    manifest: Optional[Dict[str, Any]]
    qc_dir: Path
    seconds: float
    problems: List[Dict[str, Any]] = field(default_factory=list)
    removed_old_shards: bool = False  # no tile was kept, and the shard set an earlier run left in `out` went

    @property
    def ok(self) -> bool:
        return not self.problems


# ----------------------------------------------------------------------------------------------------------------
# Stain target and balanced quotas
# ----------------------------------------------------------------------------------------------------------------
def stain_target(s: SlidesConfig, usable: Dict[str, Tuple[Path, str]]) -> Tuple[Optional[np.ndarray], str]:
    """The stain target image and where it came from (config path, tiatoolbox sample, or the first slide)."""
    from .stain import default_target_path, load_rgb

    if s.stain.method == "none":
        return None, "none"
    if s.stain.target is not None:
        if not Path(s.stain.target).is_file():
            what = "a folder, not an image file" if Path(s.stain.target).is_dir() else "no such file"
            raise TilingInputError(f"slides.stain.target {s.stain.target}: {what}")
        return load_rgb(s.stain.target), str(s.stain.target)
    default = default_target_path()
    if default is not None:
        return load_rgb(default), "tiatoolbox:data/target_image.png"
    for sid, (path, _) in usable.items():  # the first readable slide with tissue, in slide-id order
        target = _target_from_slide(s, sid, path)
        if target is not None:
            return target, f"slide:{sid}"
    return None, "none"


def _target_from_slide(s: SlidesConfig, sid: str, path: Path, side: int = 1024) -> Optional[np.ndarray]:
    """The `side`-pixel square (at the tile resolution) with the most tissue in the slide."""
    from .reader import Resolution, SlideError, SlideReader
    from .sampling import mask_fractions
    from .slide_task import slide_mask

    try:
        with SlideReader(path, sid, s.assume_mpp) as reader:
            mpp = reader.target_mpp(Resolution(s.mpp, s.magnification))
            _, mask = slide_mask(reader, s, _mask_path(s, sid, path))
            size0 = min(int(round(side * mpp / reader.mpp)), *reader.dimensions)
            step = max(1, size0 // 4)
            gx, gy = np.meshgrid(np.arange(0, reader.dimensions[0] - size0 + 1, step),
                                 np.arange(0, reader.dimensions[1] - size0 + 1, step))
            frac = mask_fractions(mask.raster, mask.scale, gx.ravel(), gy.ravel(), size0)
            if frac.size == 0 or frac.max() <= 0:
                return None
            i = int(np.argmax(frac))
            level = reader.best_level(mpp / reader.mpp)
            return reader.read_tile(int(gx.ravel()[i]), int(gy.ravel()[i]), size0, side, level)
    except SlideError:
        return None


def plan_quotas(s: SlidesConfig, usable: Dict[str, Tuple[Path, str]]) -> Tuple[Dict[str, Optional[int]],
                                                                                  Dict[str, str]]:
    """Per-slide tile caps: the configured cap, or balanced across classes when `balance_classes` is on; and
    why a slide with tissue got a cap of 0 (by slide id)."""
    if not s.sampling.balance_classes:
        return {sid: None for sid in usable}, {}
    from .reader import Resolution, SlideError, SlideReader
    from .sampling import balanced_quotas, candidates, empty_classes, zero_quota_notes
    from .slide_task import slide_mask

    counts = {}
    for sid, (path, label) in usable.items():  # thumbnails only: seconds per slide at most
        try:
            with SlideReader(path, sid, s.assume_mpp) as reader:
                mpp = reader.target_mpp(Resolution(s.mpp, s.magnification))
                size0 = max(1, int(round(s.tile_size * mpp / reader.mpp)))
                _, mask = slide_mask(reader, s, _mask_path(s, sid, path))
                counts[sid] = len(candidates(mask.raster, mask.scale, reader.dimensions, size0, s.sampling, sid))
        except SlideError:
            counts[sid] = 0  # it fails again, and is reported, when it is tiled
    labels = {sid: usable[sid][1] for sid in usable}
    quotas = balanced_quotas(counts, labels, s.sampling.max_tiles_per_slide)
    empty = empty_classes(counts, labels)
    if empty:  # its slides are reported (no tissue, unreadable); the shards lack the class: said here, once
        log.warning("slides.sampling.balance_classes: class %s has no candidate tile (no tissue, or unreadable "
                    "slides): left out, the other classes are balanced among themselves", ", ".join(map(repr, empty)))
    return dict(quotas), zero_quota_notes(counts, quotas)


# ----------------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------------
def _run_jobs(jobs: List[SlideJob], workers: int, ray_address: Optional[str], progress: bool) -> List[Dict]:
    """Run `process_slide` over jobs (in-process, process pool or Ray); results in completion order."""
    results: List[Dict[str, Any]] = []
    bar = progress_bar(total=len(jobs), desc="slides", unit="slide", enabled=progress)
    start = time.perf_counter()

    def done(result: Dict[str, Any]) -> None:
        results.append(result)
        tiles = sum(r.get("kept", 0) for r in results)
        bar.set_postfix(tiles=tiles, tiles_per_s=f"{tiles / max(time.perf_counter() - start, 1e-9):.1f}")
        bar.update(1)

    try:
        if ray_address is not None:
            for r in ray_results(jobs, ray_address, _crashed):
                done(r)
        elif workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                done(process_slide(job))
        else:
            for r in _pool_results(jobs, workers):
                done(r)
    finally:
        bar.close()
    return results


def staging_folder(out: Path) -> Path:
    """Where slides are tiled before the shard set `out` is written: `<out>.work` beside it (absolute)."""
    out = _absolute(Path(out))
    return out.with_name(out.name + ".work")


def _absolute(path: Path) -> Path:
    """`path` from the current folder, links kept (a linked slide keeps its own name in the summary)."""
    return Path(os.path.abspath(path))


def _mask_path(s, slide_id: str, path: Path) -> Optional[Path]:
    """The slide's corrected mask in `slides.mask_dir` if there is one (else the slide is detected)."""
    return mask_path(s.mask_dir, slide_id, Path(path).name)


def _crashed(job: SlideJob, err: BaseException) -> Dict[str, Any]:
    return {**problem_record(job.slide_id, job.label, "failed", f"worker crashed on {Path(job.path).name}: "
                       f"{type(err).__name__}: {err}"), "file": Path(job.path).name}


def _pool_results(jobs: List[SlideJob], workers: int) -> Iterable[Dict[str, Any]]:
    """Process pool over slides. A worker that dies (a decoder segfault on a corrupt slide) breaks the whole
    pool; the unfinished slides are then retried one per fresh single-process pool, so only the slide that
    kills its worker is lost (and reported)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # spawn: OpenSlide handles and threads (tqdm, Ray) do not survive fork reliably.
    ctx = multiprocessing.get_context("spawn")
    pending, isolate = list(jobs), False
    while pending:
        batch = pending[:1] if isolate else list(pending)
        try:
            with ProcessPoolExecutor(max_workers=1 if isolate else min(workers, len(batch)),
                                     mp_context=ctx) as pool:
                futures = {pool.submit(process_slide, job): job for job in batch}
                try:
                    for fut in as_completed(futures):
                        result = fut.result()
                        pending.remove(futures[fut])
                        yield result
                except BaseException:
                    # Ctrl-C or SIGTERM, here or in the caller (the generator is then closed at its `yield`):
                    # leaving the block would wait for every queued slide. The queued ones are cancelled, the
                    # ones in flight finish (their staged tiles are kept for the resume). Waiting here: the
                    # block's own shutdown(wait=True) would reset the cancel before the pool's thread saw it.
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        except BrokenProcessPool as err:
            if isolate:
                pending.remove(batch[0])
                yield _crashed(batch[0], err)
            isolate = True


def staged_samples(work_dir: Path, results: List[Dict[str, Any]], image_size: Optional[int] = None):
    """SampleSpecs of every kept tile of the completed slides, naming the staged files (read when encoded: a
    cohort's tiles held as bytes here filled the memory before the first shard was written). `image_size`: the
    side the shards store the tiles at (`data.build.image_size`; None: as staged); each sample's meta records it and
    the resolution it makes (`image_size`, `image_mpp`), which differ from the tile's own (`tile_size`, `mpp`)
    when the build resizes the tiles."""
    from ..data.build import SampleSpec

    samples = []
    for r in results:
        if r.get("status") != "ok":
            continue
        slide_dir = Path(work_dir) / "slides" / safe_key(r["slide_id"])
        with open(slide_dir / TILES) as f:
            for line in f:
                rec = json.loads(line)
                meta, side = rec["meta"], image_size or rec["meta"]["tile_size"]
                meta = {**meta, "image_size": side, "image_mpp": round(meta["mpp"] * meta["tile_size"] / side, 6)}
                samples.append(SampleSpec(key=rec["key"], label=r["label"],
                                          image=slide_dir / "tiles" / f"{rec['key']}.jpg",
                                          slide_id=r["slide_id"], meta=meta))
    return samples


def tile_slides(s: SlidesConfig, build: BuildConfig, slides: Path, labels: Path, out: Path, classes: Sequence[str],
                progress: bool = True, logger=None, checked=None) -> TilingReport:
    """Tile every labelled slide and write the shard set `out` (see the module docstring), holding a
    `FolderLock` on `out` for the whole job (a second job into it stops at once, naming this one). `checked`: what
    `check_inputs` returned for these inputs, when the caller ran it already (it opens every slide)."""
    from ..core.runlock import FolderLock
    from ..data.build import discard_empty_output

    if s.mask_dir is not None:
        masks = _absolute(Path(s.mask_dir))
        for replaced in (_absolute(Path(out)), staging_folder(Path(out)) / "qc"):
            if masks == replaced or replaced in masks.parents:
                raise TilingInputError(f"--mask-dir {s.mask_dir} is inside {replaced}, which this run replaces (its "
                                       f"masks would go with it): copy the corrected masks to a folder of their own")
    refuse_file_out(Path(out))
    lock = FolderLock(Path(out), "slides tile").acquire()
    try:
        report = _tile_slides_locked(s, build, slides, labels, out, classes, progress, logger, checked)
        if report.manifest is None:
            discard_empty_output(Path(out), lock)  # no shards (the QC files are in <out>.work/qc): no folder
        return report
    except BaseException:
        discard_empty_output(Path(out), lock)  # a job stopped before writing anything leaves no folder
        raise
    finally:
        lock.release()


def check_inputs(s: SlidesConfig, slides: Path, labels: Path, classes: Sequence[str]
                 ) -> Tuple[Dict[str, Tuple[Path, str]], List[Dict[str, Any]]]:
    """The slides that can be tiled and the problem records of the others; a usage error (no slide, no usable
    one, a bad mask folder, tiles far finer than a scan) raised before anything is written."""
    found = find_slides(Path(slides))
    if not found:
        raise TilingInputError(no_slide_files(Path(slides)))
    usable, problems = match_inputs(found, read_labels(Path(labels)), classes,
                                    folder=Path(slides) if Path(slides).is_dir() else None)
    if not usable:
        raise TilingInputError(no_usable_slide(slides, labels, problems))
    if s.mask_dir is not None:
        check_mask_dir(Path(s.mask_dir), usable, {sid: path.name for sid, (path, _) in usable.items()})
    refuse_upsampling(s, usable)
    return usable, problems


def _tile_slides_locked(s: SlidesConfig, build: BuildConfig, slides: Path, labels: Path, out: Path,
                        classes: Sequence[str], progress: bool, logger, checked=None) -> TilingReport:
    from ..data.build import build_shards

    start = time.perf_counter()
    # Absolute: a Ray task on an existing cluster runs in the cluster's working directory, not ours (and `--out .`
    # has a name to stage beside).
    out = _absolute(Path(out))
    work = staging_folder(out)
    usable, problems = checked or check_inputs(s, slides, labels, classes)
    target, target_source = stain_target(s, usable)
    if s.stain.method != "none" and target is None:
        raise TilingInputError("no stain target: set slides.stain.target (no tiatoolbox, no slide with tissue)")
    quotas, quota_notes = plan_quotas(s, usable)
    from .stain import StainNormalizer

    # a target file was checked by load_rgb; a region of a slide was not
    normalizer = StainNormalizer(s.stain.method, target, checked=not target_source.startswith("slide:"))

    results: List[Dict[str, Any]] = []
    jobs: List[SlideJob] = []
    for sid, (path, label) in usable.items():
        mask_path = _mask_path(s, sid, path)
        fp = fingerprint(s, path, quotas[sid], target, mask_path)
        previous = load_result(work, sid)
        if reusable(work, sid, previous, fp, s):
            results.append({**previous, "label": label, "resumed": True})  # (a corrected label: see fingerprint)
            continue
        jobs.append(SlideJob(sid, _absolute(path), label, s, work, fp, quotas[sid],
                             None if mask_path is None else _absolute(mask_path), normalizer, quota_notes.get(sid)))
    if results:
        log.info("resuming: %d slide(s) already tiled in %s, %d to go", len(results), work, len(jobs))
    results.extend(_run_jobs(jobs, s.workers, s.ray_address, progress))
    results.sort(key=lambda r: r["slide_id"])
    for r in results:  # resumed ones too: their tiles in these shards were made that way
        for warning in r.get("warnings", ()):
            log.warning("slide %s (%s): %s", r["slide_id"], r.get("file"), warning)

    stored = None if build.image_format == "original" else build.image_size
    if stored is not None and stored != s.tile_size:  # else `--tile-size 512` made 256 px shards without a word
        log.warning("slides.tile_size=%d px tiles are stored in the shards at data.build.image_size=%d px: %.3gx %s "
                    "than tiled (each sample's json: image_size, image_mpp); data.build.image_size=%d keeps them as "
                    "tiled", s.tile_size, stored, max(s.tile_size / stored, stored / s.tile_size),
                    "coarser" if stored < s.tile_size else "upsampled, finer", s.tile_size)
    samples = staged_samples(work, results, stored)
    manifest, removed = None, False
    if not samples:
        removed = discard_old_shard_set(out)
    else:
        provenance = {"tool": "mmlnb-dist slides tile", "stain_target": target_source,
                      "slides": s.model_dump(mode="json", exclude={"workers", "ray_address", "mask_dir",
                                                                   "log_to_tracking", "qc_pictures"}),
                      "slide_files": {r["slide_id"]: r.get("file") for r in results if r["status"] == "ok"}}
        manifest = build_shards(samples, out, build, classes=classes, provenance=provenance,
                                progress=progress, lock=False)  # tile_slides holds the lock
    all_results = sorted(results + problems, key=lambda r: r["slide_id"])
    qc_dir = _write_qc(out if manifest is not None else work, work, all_results, logger, s.qc_pictures)
    bad = [r for r in all_results if r["status"] in PROBLEM_STATUSES]
    return TilingReport(all_results, manifest, qc_dir, time.perf_counter() - start, bad, removed)


def discard_old_shard_set(out: Path) -> bool:
    """Remove the shard set an earlier run left in `out` when this run writes none: left there, it would be read
    by `train` or `pipeline --from` as this run's (cut with other slides or settings). A folder that is not a
    shard set (no manifest, no interrupted-build marker) is the user's and is left alone. True if one was removed."""
    import shutil

    from ..core.runlock import is_lock_file
    from ..data.build import INCOMPLETE
    from ..data.shardset import MANIFEST

    if not out.is_dir() or not ((out / MANIFEST).is_file() or (out / INCOMPLETE).exists()):
        return False
    log.warning("%s: removing the shard set of an earlier run (this run kept no tile to replace it with)", out)
    (out / MANIFEST).unlink(missing_ok=True)  # first: a removal cut short leaves no finished-looking set
    for entry in out.iterdir():
        if not is_lock_file(entry.name):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    return True


def _write_qc(base: Path, work: Path, results: List[Dict[str, Any]], logger, pictures: bool = True) -> Path:
    """Copy masks and pictures next to the shards (`<out>/qc/`), write the summary CSV, log to tracking. Only this
    run's: the files an earlier run left there go first, and a slide's staged files are copied only when they are
    this result's (a slide that now fails or is now unlabelled keeps the staged folder of its earlier run)."""
    import shutil

    from .report import summary_rows, write_summary_csv

    qc_dir = base / "qc"
    qc_dir.mkdir(parents=True, exist_ok=True)
    for dest in ("masks", "pictures"):
        shutil.rmtree(qc_dir / dest, ignore_errors=True)
    kinds = (("mask.geojson", "masks", MASK_SUFFIX),) + ((("qc.png", "pictures", ".png"),) if pictures else ())
    for r in results:
        staged = load_result(work, r["slide_id"])
        if staged is None or r.get("fingerprint") is None or staged.get("fingerprint") != r["fingerprint"]:
            continue
        slide_dir = work / "slides" / safe_key(r["slide_id"])
        for name, dest, suffix in kinds:
            if (slide_dir / name).is_file():
                (qc_dir / dest).mkdir(exist_ok=True)
                shutil.copyfile(slide_dir / name, qc_dir / dest / qc_file_name(r["slide_id"], suffix))
    summary = write_summary_csv(summary_rows(results), qc_dir / "summary.csv")
    if logger is not None:
        if (qc_dir / "pictures").is_dir():
            logger.log_artifact(qc_dir / "pictures", "slides_qc")
        logger.log_artifact(summary, "slides_qc")
        ok = [r for r in results if r["status"] == "ok"]
        logger.log_metrics({"slides/ok": float(len(ok)), "slides/problems": float(len(results) - len(ok)),
                            "slides/tiles": float(sum(r["kept"] for r in ok))}, step=0)
    return qc_dir
