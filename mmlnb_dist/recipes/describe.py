"""Description generation: a `txt` description for every patch of a shard set, distributed, batched, resumable.

    from mmlnb_dist.recipes.describe import run_describe
    out = run_describe(cfg, vlm="tiny", adapter="runs/x/adapter", shards_in="shards/nbpath",
                       out="shards/nbpath-described")

Launch with one process, `torchrun`/`deepspeed --num_gpus N` or several nodes: input shards are dealt to ranks
round-robin by their index across all splits (rank r takes shards r, r + W, ...), so ranks never share a shard.

Output: a shard set with the same split/shard file names and sample keys, images, `cls` and `json`; `txt` is
the generated description and a pre-existing description moves to `json["reference_description"]`. Its
manifest records model, adapter sha256, prompt, generation settings and counts under
`provenance["describe"]`; `quality_report.json` holds description-length statistics, the share of empty and
repeated outputs and, where references exist, ROUGE-L and BLEU-4 against them.

Resume: an output shard is written under a temporary name and renamed when complete, so an existing output tar
is final. While a shard is in progress its finished batches are appended to `.progress/<shard>.jsonl`
(flushed and fsynced per batch); a restarted run skips those batches. Batch boundaries are fixed offsets in the
shard, so with greedy decoding a resumed run produces exactly the descriptions of an uninterrupted one.
Rank 0 checks at the end that the output holds every input sample exactly once.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch

from ..config import Config
from ..distributed import DistEnv, all_gather_object, barrier, destroy_process_group, init_process_group
from ..models import vlm as V
from ..text_metrics import corpus_scores

PROGRESS_DIR = ".progress"


# ---------------------------------------------------------------------------------------------------------
# Work assignment and per-shard resume state
# ---------------------------------------------------------------------------------------------------------

def input_shards(manifest: Dict[str, Any]) -> List[Tuple[str, int, Dict[str, Any]]]:
    """(split, position in split, manifest entry) of every shard, in manifest order."""
    return [(split, i, entry) for split, info in manifest["splits"].items()
            for i, entry in enumerate(info["shards"])]


def assign(shards: List[Any], rank: int, world: int) -> List[Any]:
    """Round-robin by global shard index: disjoint across ranks, their union is everything."""
    return shards[rank::world]


def _read_progress(path: Path) -> Dict[str, str]:
    """key -> description of batches already done; a torn last line (killed mid-write) is ignored."""
    done: Dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            done[row["key"]] = row["txt"]
    return done


def _append_progress(path: Path, rows: Iterable[Tuple[str, str]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for key, txt in rows:
            f.write(json.dumps({"key": key, "txt": txt}, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _entry_for_existing(path: Path, classes: List[str]) -> Dict[str, Any]:
    """Manifest entry of a finished output shard (after a restart)."""
    from ..data.shards import _sha256, iter_shard_samples

    counts: Counter = Counter(classes[int(s["cls"])] for s in iter_shard_samples(path))
    return {"file": path.name, "num_samples": sum(counts.values()),
            "class_counts": {c: counts.get(c, 0) for c in classes}, "sha256": _sha256(path),
            "bytes": path.stat().st_size}


def _described(sample: Dict[str, Any], text: str) -> Dict[str, Any]:
    """The output sample: same members, new `txt`, the original description kept as the reference."""
    out = dict(sample)
    out.pop("__shard__", None)
    meta = json.loads(sample["json"]) if "json" in sample else {}
    if "txt" in sample:
        meta["reference_description"] = sample["txt"].decode("utf-8")
    out["json"] = json.dumps(meta, sort_keys=True, ensure_ascii=False)
    out["txt"] = text
    return out


# ---------------------------------------------------------------------------------------------------------
# The describer
# ---------------------------------------------------------------------------------------------------------

class Describer:
    """Loads the VLM (+ adapter) once and describes whole shards."""

    def __init__(self, cfg: Config, vlm: str, adapter: Optional[str], env: DistEnv):
        self.cfg, self.env = cfg, env
        gpu = env.device.type == "cuda"
        self.dtype = V.dtype_for(cfg.distributed.precision) if gpu else torch.float32
        vcfg = cfg.vlm
        model, self.processor = V.load_vlm(vlm, min_pixels=vcfg.min_pixels, max_pixels=vcfg.max_pixels,
                                           dtype=self.dtype, seed=vcfg.tiny_seed, cache_dir=vcfg.cache_dir)
        if adapter:
            model = V.load_adapter(model, adapter)
            if vcfg.generation.merge_adapter:
                model = model.merge_and_unload()
        self.model = model.to(env.device).eval()

    def describe(self, images: List[bytes]) -> List[str]:
        v = self.cfg.vlm
        return V.generate_descriptions(self.model, self.processor, images, v.prompt, v.generation,
                                       device=self.env.device, model_dtype=self.dtype)

    def describe_shard(self, src: Path, dst: Path, classes: List[str], bar) -> Dict[str, Any]:
        """Describe one shard into `dst` (atomic), continuing from its progress file; returns its entry."""
        from ..data.shards import image_member, iter_shard_samples, write_tar_shard

        progress = dst.parent / PROGRESS_DIR / (dst.name + ".jsonl")
        done = _read_progress(progress)
        samples = list(iter_shard_samples(src))
        bs = self.cfg.vlm.generation.batch_size
        for start in range(0, len(samples), bs):  # fixed boundaries: a resumed run batches identically
            batch = samples[start:start + bs]
            if all(s["__key__"] in done for s in batch):
                continue
            texts = self.describe([s[image_member(s)] for s in batch])
            rows = [(s["__key__"], t) for s, t in zip(batch, texts)]
            _append_progress(progress, rows)
            done.update(rows)
            bar.update(len(batch))
        entry = write_tar_shard(dst, (_described(s, done[s["__key__"]]) for s in samples), classes)
        progress.unlink(missing_ok=True)
        return entry


# ---------------------------------------------------------------------------------------------------------
# Verification and quality report (rank 0)
# ---------------------------------------------------------------------------------------------------------

def _keys(path: Path) -> List[str]:
    from ..data.shards import iter_shard_samples

    return [s["__key__"] for s in iter_shard_samples(path)]


def verify_exactly_once(shards_in: Path, out: Path, manifest: Dict[str, Any]) -> int:
    """Every input key appears exactly once in the output, in the same split; returns the count."""
    n = 0
    for split, _, entry in input_shards(manifest):
        want = _keys(shards_in / entry["file"])
        got = _keys(out / entry["file"])
        if Counter(want) != Counter(got):
            missing = set(want) - set(got)
            dup = [k for k, c in Counter(got).items() if c > 1]
            raise RuntimeError(f"describe output {out / entry['file']} ({split}) does not match its input: "
                               f"{len(missing)} missing, {len(dup)} duplicated keys")
        n += len(want)
    return n


def quality_report(out: Path, manifest: Dict[str, Any]) -> Dict[str, Any]:
    """Length distribution, empty/repeated shares, and ROUGE-L/BLEU-4 against references where present."""
    from ..data.shards import iter_shard_samples

    texts, hyps, refs = [], [], []
    for _, _, entry in input_shards(manifest):
        for s in iter_shard_samples(out / entry["file"]):
            t = s["txt"].decode("utf-8")
            texts.append(t)
            ref = json.loads(s["json"]).get("reference_description") if "json" in s else None
            if ref:
                hyps.append(t)
                refs.append(ref)
    lengths = sorted(len(t.split()) for t in texts)
    counts = Counter(texts)

    def pct(q: float) -> float:
        return float(lengths[min(len(lengths) - 1, int(q * len(lengths)))]) if lengths else 0.0

    report = {
        "n": len(texts),
        "words": {"mean": sum(lengths) / max(len(lengths), 1), "min": pct(0.0), "p50": pct(0.5),
                  "p90": pct(0.9), "max": pct(1.0)},
        "empty_share": sum(1 for t in texts if not t.strip()) / max(len(texts), 1),
        # Share of outputs identical to another output: a collapsed generator repeats itself.
        "repeated_share": sum(c for c in counts.values() if c > 1) / max(len(texts), 1),
        "distinct": len(counts),
        "reference": corpus_scores(hyps, refs) if refs else None,
    }
    return report


def format_report(report: Dict[str, Any]) -> str:
    w = report["words"]
    lines = [f"descriptions: {report['n']} ({report['distinct']} distinct)",
             f"words: mean {w['mean']:.1f}, min {w['min']:.0f}, median {w['p50']:.0f}, p90 {w['p90']:.0f}, "
             f"max {w['max']:.0f}",
             f"empty: {report['empty_share']:.1%}, repeated: {report['repeated_share']:.1%}"]
    ref = report.get("reference")
    if ref:
        lines.append(f"vs references (n={ref['n']}): ROUGE-L {ref['rouge_l']:.3f}, BLEU-4 {ref['bleu4']:.3f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------

def run_describe(cfg: Config, vlm: Optional[str] = None, adapter: Optional[str] = None,
                 shards_in: Optional[Path] = None, out: Optional[Path] = None,
                 env: Optional[DistEnv] = None, progress: bool = True) -> Dict[str, Any]:
    """Describe every sample of `shards_in` into `out`. Defaults: vlm = cfg.vlm.model, shards_in =
    cfg.data.shards, out = `<shards_in>-described`. Returns out, counts, samples/s and the quality report."""
    from tqdm import tqdm

    from ..data.shards import read_manifest

    env = env or DistEnv.from_environment()
    vlm = vlm or cfg.vlm.model
    shards_in = Path(shards_in or cfg.data.shards)
    out = Path(out or f"{shards_in}-described")
    if out.resolve() == shards_in.resolve():
        raise ValueError("describe output must differ from its input shard set")
    manifest = read_manifest(shards_in)
    classes = list(manifest["classes"])
    owns_group = env.is_distributed and not torch.distributed.is_initialized()
    init_process_group(env, cfg.distributed)
    try:
        (out / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
        mine = assign(input_shards(manifest), env.rank, env.world_size)
        todo = [m for m in mine if not (out / m[2]["file"]).is_file()]
        total = sum(m[2]["num_samples"] for m in todo)
        already = sum(len(_read_progress(out / PROGRESS_DIR / (m[2]["file"] + ".jsonl"))) for m in todo)
        entries: List[Tuple[str, int, Dict[str, Any]]] = []
        t0 = time.perf_counter()
        describer = Describer(cfg, vlm, adapter, env) if todo else None
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        bar = tqdm(total=total, initial=already, unit="img", desc=f"describe[rank {env.rank}]",
                   disable=not progress, dynamic_ncols=True)
        for split, i, entry in mine:
            dst = out / entry["file"]
            if dst.is_file():  # finished by an earlier run (written atomically)
                entries.append((split, i, _entry_for_existing(dst, classes)))
                continue
            entries.append((split, i, describer.describe_shard(shards_in / entry["file"], dst, classes, bar)))
        bar.close()
        gen_s = time.perf_counter() - t1
        done_here = total - already
        gathered = all_gather_object(env, {"entries": entries, "described": done_here, "seconds": gen_s})
        result: Dict[str, Any] = {"out": str(out)}
        if env.is_main:
            result.update(_finish(cfg, vlm, adapter, shards_in, out, manifest, gathered))
            result["load_seconds"] = load_s
        barrier(env)
        return result
    finally:
        if owns_group:
            destroy_process_group()


def _finish(cfg: Config, vlm: str, adapter: Optional[str], shards_in: Path, out: Path,
            manifest: Dict[str, Any], gathered: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Rank 0: manifest with provenance, exactly-once check, quality report."""
    from ..data.shards import write_manifest

    by_pos = {(s, i): e for g in gathered for s, i, e in g["entries"]}
    new = json.loads(json.dumps(manifest))
    for split, info in new["splits"].items():
        info["shards"] = [by_pos[(split, i)] for i in range(len(info["shards"]))]
    described = sum(g["described"] for g in gathered)
    seconds = max(g["seconds"] for g in gathered)
    gen = cfg.vlm.generation
    settings = {
        "preset": gen.preset, "max_new_tokens": gen.max_new_tokens, "batch_size": gen.batch_size,
        **(V.AUTHORS_SAMPLING if gen.preset == "authors" else {"do_sample": False}),
    }
    new["has_descriptions"] = True
    new.setdefault("provenance", {})
    new["provenance"] = dict(new["provenance"] or {})
    new["provenance"]["describe"] = {
        "source": str(shards_in), "model": vlm,
        "resolved_model": V.resolve_model_path(vlm, cfg.vlm.tiny_seed, cfg.vlm.cache_dir),
        "adapter": str(adapter) if adapter else None, "adapter_sha256": V.adapter_sha256(adapter),
        "prompt": cfg.vlm.prompt, "min_pixels": cfg.vlm.min_pixels, "max_pixels": cfg.vlm.max_pixels,
        "generation": settings, "world_size": len(gathered),
        "counts": {s: info["num_samples"] for s, info in new["splits"].items()},
    }
    write_manifest(out, new)
    n = verify_exactly_once(shards_in, out, manifest)
    report = quality_report(out, manifest)
    (out / "quality_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report), flush=True)
    try:
        (out / PROGRESS_DIR).rmdir()
    except OSError:
        pass
    result = {"num_samples": n, "described_now": described, "seconds": seconds,
              "samples_per_s": described / seconds if seconds > 0 else None, "quality": report}
    _track(cfg, shards_in, out, result)
    return result


def _track(cfg: Config, shards_in: Path, out: Path, result: Dict[str, Any]) -> None:
    """Log the describe run (rank 0): its config, the input shard set, the quality figures and report."""
    from ..tracking import build_logger

    tracked = cfg.model_copy(update={"data": cfg.data.model_copy(update={"shards": shards_in})})
    run_dir = Path(cfg.run.output_dir) / f"{cfg.run.name}-describe"
    logger = build_logger(tracked, 0, run_dir, "describe", tags={"output": str(out)})
    q = result["quality"]
    metrics = {"describe/samples": float(result["num_samples"]), "describe/words_mean": q["words"]["mean"],
               "describe/empty_share": q["empty_share"], "describe/repeated_share": q["repeated_share"],
               "describe/distinct": float(q["distinct"])}
    if result["samples_per_s"]:
        metrics["describe/samples_per_s"] = float(result["samples_per_s"])
    for name in ("rouge_l", "bleu4"):  # against the reference descriptions, where the input had them
        if q.get("reference"):
            metrics[f"describe/{name}"] = float(q["reference"][name])
    logger.log_metrics(metrics, step=0)
    logger.log_artifact(out / "quality_report.json")
    logger.log_artifact(out / "manifest.json")
    logger.close()


# ---------------------------------------------------------------------------------------------------------
# In-memory entry point (prediction from raw images)
# ---------------------------------------------------------------------------------------------------------

def describe_images(images: List[Any], model: str, adapter: Optional[Union[str, Path]] = None,
                    cfg: Optional[Config] = None) -> List[str]:
    """Descriptions for images (bytes or PIL), generated exactly as `describe` does (same prompt, template, pixel bounds
    and generation settings). Without `cfg`, the settings are read from the fine-tuning run that wrote the
    adapter (`<run_dir>/config.yaml` beside `<run_dir>/adapter`), so prediction uses the prompt and image
    size the adapter was trained with; with neither, the defaults."""
    from ..config import load_config

    if cfg is None:
        trained_with = Path(adapter).parent / "config.yaml" if adapter else None
        cfg = load_config(trained_with if trained_with and trained_with.is_file() else None)
    describer = Describer(cfg, model, str(adapter) if adapter else None, DistEnv.from_environment())
    bs = cfg.vlm.generation.batch_size
    texts: List[str] = []
    for start in range(0, len(images), bs):
        texts.extend(describer.describe(list(images[start:start + bs])))
    return texts
