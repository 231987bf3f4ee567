"""The one-command pipeline behind `mmlnb-dist demo`: every stage of the paper, in order, with skipping.

    synth -> shards build -> finetune-vlm -> describe -> train (fusion) -> metrics

Each stage records a fingerprint of what it was built from (its config section and its input's digest) in
`<output>/.stage.json`. A rerun skips a stage whose output carries the same fingerprint, so an interrupted
demo continues where it stopped and a changed setting reruns only the stages it reaches.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .config import Config

STAGE_FILE = ".stage.json"


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _stage_done(out: Path, fp: str) -> bool:
    try:
        return json.loads((out / STAGE_FILE).read_text()).get("fingerprint") == fp
    except (OSError, ValueError):
        return False


def _mark_done(out: Path, fp: str, info: Dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / STAGE_FILE).write_text(json.dumps({"fingerprint": fp, **info}, indent=2, default=str))


def manifest_digest(shard_dir: Path) -> str:
    return hashlib.sha256((Path(shard_dir) / "manifest.json").read_bytes()).hexdigest()[:16]


@dataclass
class StageResult:
    name: str
    output: Path
    fingerprint: str
    skipped: bool
    seconds: float
    info: Dict[str, Any] = field(default_factory=dict)


def run_stage(name: str, out: Path, fp: str, work: Callable[[], Dict[str, Any]], log: Callable[[str], None]
              ) -> StageResult:
    """Run `work` unless `out` already holds this fingerprint; record it when done."""
    if _stage_done(out, fp):
        log(f"[{name}] up to date in {out} (fingerprint {fp}): skipped")
        info = json.loads((out / STAGE_FILE).read_text())
        return StageResult(name, out, fp, True, 0.0, info)
    log(f"[{name}] running -> {out}")
    t0 = time.time()
    info = work() or {}
    _mark_done(out, fp, info)
    secs = time.time() - t0
    log(f"[{name}] done in {secs:.1f}s")
    return StageResult(name, out, fp, False, secs, info)


def stage_synth(cfg: Config, log: Callable[[str], None]) -> StageResult:
    from .data.synthetic import make_synthetic_dataset

    s = cfg.data.synth
    out = Path(cfg.data.synth_dir)

    def work() -> Dict[str, Any]:
        summary = make_synthetic_dataset(out, n=s.n, size=s.size, n_slides=s.n_slides,
                                         noisy_description_rate=s.noisy_description_rate, seed=s.seed,
                                         progress=True)
        return {"summary": summary}

    return run_stage("synth", out, fingerprint("synth", s.model_dump()), work, log)


def stage_shards(cfg: Config, source: StageResult, log: Callable[[str], None]) -> StageResult:
    from .data.shards import build_shards, collect_samples

    out = Path(cfg.data.shards)
    fp = fingerprint("shards", source.fingerprint, cfg.data.build.model_dump())

    def work() -> Dict[str, Any]:
        samples = collect_samples(source.output)
        manifest = build_shards(samples, out, cfg.data.build, provenance={"input": str(source.output)})
        return {"counts": {k: v["class_counts"] for k, v in manifest["splits"].items()}}

    return run_stage("shards", out, fp, work, log)


def stage_train(cfg: Config, shards: StageResult, log: Callable[[str], None]) -> StageResult:
    """Stage 2: the fusion classifier on `shards.output` (a described shard set in the full pipeline)."""
    from .recipes.train_fusion import run as train_fusion

    cfg = cfg.model_copy(deep=True)
    cfg.data.shards = shards.output
    cfg.run.name = f"{cfg.run.name}-fusion"
    fp = fingerprint("train", shards.fingerprint, manifest_digest(shards.output), cfg.run.seed,
                     cfg.model.model_dump(), cfg.train.model_dump(), cfg.distributed.model_dump(),
                     cfg.data.loader.model_dump())

    def work() -> Dict[str, Any]:
        result = train_fusion(cfg)
        return {"metrics": {k: v for k, v in result.items() if isinstance(v, (int, float, str))}}

    return run_stage("train", Path(cfg.run.dir), fp, work, log)


PAPER_COLUMNS = [("accuracy", "Acc"), ("balanced_accuracy", "BAcc"), ("kappa", "Kappa"),
                 ("f1_weighted", "F1"), ("precision_weighted", "Prec"), ("recall_weighted", "Rec"),
                 ("auroc", "AUROC")]


def paper_table(metrics: Dict[str, Any], split: str = "val") -> str:
    """The paper's Table 1 columns (in %) for one split, plus the ordinal quadratic kappa."""
    head = " | ".join(f"{name:>6}" for _, name in PAPER_COLUMNS) + " | QWK(ord)"
    row = " | ".join(f"{100 * metrics[f'{split}/{key}']:6.2f}" for key, _ in PAPER_COLUMNS)
    row += f" | {100 * metrics[f'{split}/quadratic_kappa']:8.2f}"
    return f"{split} split (best checkpoint), %:\n{head}\n{row}\n" \
        "Kappa is unweighted Cohen's kappa; QWK(ord) is quadratic-weighted on the ordinal order UD < PD < D."


def run_demo(cfg: Config, log: Callable[[str], None] = print) -> List[StageResult]:
    """Run the embedded-default pipeline end to end; return what each stage did."""
    synth = stage_synth(cfg, log)
    shards = stage_shards(cfg, synth, log)
    train = stage_train(cfg, shards, log)
    results = [synth, shards, train]
    return results
