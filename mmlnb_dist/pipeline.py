"""The one-command pipeline behind `mmlnb-dist demo`: every stage of the paper, in order, with skipping.

    synth -> shards build -> finetune-vlm -> describe -> train (fusion) -> metrics

The VLM is fine-tuned on the train split's pairs only, so the descriptions of validation and test patches
come from a model that never saw them (the fusion stage then trains on generated, not reference, text).

Each stage records a fingerprint of what it was built from (its config section and its input's digest) in
a hidden file beside its output, `.<output name>.stage.json` (beside, not inside: stages such as the shard
builder replace their output folder whole). A rerun skips a stage whose output carries the same fingerprint, so an interrupted
demo continues where it stopped and a changed setting reruns only the stages it reaches.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List

from .config import Config
from .errors import UserError


def stage_file(out: Path) -> Path:
    return out.parent / f".{out.name}.stage.json"


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _read_stage(out: Path) -> Dict[str, Any]:
    try:
        return json.loads(stage_file(out).read_text())
    except (OSError, ValueError):
        return {}


def _write_stage(out: Path, fp: str, status: str, info: Dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = stage_file(out).with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": fp, "status": status, **info}, indent=2, default=str))
    tmp.replace(stage_file(out))


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


def run_stage(name: str, out: Path, fp: str, work: Callable[[bool], Dict[str, Any]],
              log: Callable[[str], None]) -> StageResult:
    """Run `work(resume)` unless `out` already holds this fingerprint as done.

    - done with this fingerprint: skipped;
    - started with this fingerprint and interrupted: `work(resume=True)` continues it;
    - built by the pipeline from other inputs: the stale output is removed and the stage runs afresh;
    - a folder the pipeline did not make: refused, never deleted.
    """
    state = _read_stage(out)
    if state.get("fingerprint") == fp and state.get("status") == "done":
        log(f"[{name}] up to date in {out} (fingerprint {fp}): skipped")
        return StageResult(name, out, fp, True, 0.0, state)
    resume = state.get("fingerprint") == fp and state.get("status") == "running"
    if out.exists() and not resume:
        if not state:
            if any(out.iterdir()):
                raise UserError(f"[{name}] {out} exists and was not made by this pipeline; move it away "
                                      f"or point the config elsewhere")
        else:
            log(f"[{name}] inputs or settings changed since {out} was built: rebuilding it")
        shutil.rmtree(out)
    log(f"[{name}] {'resuming' if resume else 'running'} -> {out}")
    _write_stage(out, fp, "running", {})
    t0 = time.time()
    info = work(resume) or {}
    _write_stage(out, fp, "done", info)
    secs = time.time() - t0
    log(f"[{name}] done in {secs:.1f}s")
    return StageResult(name, out, fp, False, secs, info)


def stage_synth(cfg: Config, log: Callable[[str], None]) -> StageResult:
    from .data.synthetic import make_synthetic_dataset

    s = cfg.data.synth
    out = Path(cfg.data.synth_dir)

    def work(resume: bool) -> Dict[str, Any]:
        summary = make_synthetic_dataset(out, n=s.n, size=s.size, n_slides=s.n_slides,
                                         noisy_description_rate=s.noisy_description_rate, seed=s.seed,
                                         progress=True)
        return {"summary": summary}

    return run_stage("synth", out, fingerprint("synth", s.model_dump()), work, log)


def stage_shards(cfg: Config, source: StageResult, log: Callable[[str], None]) -> StageResult:
    from .data.shards import build_shards, collect_samples

    out = Path(cfg.data.shards)
    fp = fingerprint("shards", source.fingerprint, cfg.data.build.model_dump())

    def work(resume: bool) -> Dict[str, Any]:
        samples = collect_samples(source.output)
        manifest = build_shards(samples, out, cfg.data.build, provenance={"input": str(source.output)})
        return {"counts": {k: v["class_counts"] for k, v in manifest["splits"].items()}}

    return run_stage("shards", out, fp, work, log)


def stage_finetune_vlm(cfg: Config, shards: StageResult, log: Callable[[str], None]) -> StageResult:
    """Stage 1a: LoRA fine-tuning of the VLM on the image-description pairs of the train split."""
    from .recipes.finetune_vlm import run as finetune_vlm

    cfg = cfg.model_copy(deep=True)
    cfg.vlm.pairs = shards.output
    cfg.run.name = f"{cfg.run.name}-vlm"
    fp = fingerprint("finetune-vlm", shards.fingerprint, manifest_digest(shards.output), cfg.run.seed,
                     cfg.vlm.model_dump(exclude={"generation"}), cfg.distributed.model_dump())

    def work(resume: bool) -> Dict[str, Any]:
        cfg.run.resume = resume
        result = finetune_vlm(cfg)
        return {"adapter_dir": result["adapter_dir"], "base_model": result["base_model"],
                "losses": {k: v for k, v in result.items() if k.endswith("loss")}}

    return run_stage("finetune-vlm", Path(cfg.run.dir), fp, work, log)


def stage_describe(cfg: Config, vlm: StageResult, shards: StageResult, log: Callable[[str], None]
                   ) -> StageResult:
    """Stage 1b: the fine-tuned VLM describes every patch; the output is a new shard set with `txt`."""
    from .recipes.describe import run_describe

    out = Path(f"{shards.output}-described")
    fp = fingerprint("describe", vlm.fingerprint, shards.fingerprint, cfg.vlm.prompt,
                     cfg.vlm.generation.model_dump())

    def work(resume: bool) -> Dict[str, Any]:  # describe resumes from its own progress files
        result = run_describe(cfg, vlm=cfg.vlm.model, adapter=vlm.info["adapter_dir"],
                              shards_in=shards.output, out=out)
        return {"num_samples": result.get("num_samples"), "quality": result.get("quality")}

    return run_stage("describe", out, fp, work, log)


def stage_train(cfg: Config, shards: StageResult, log: Callable[[str], None]) -> StageResult:
    """Stage 2: the fusion classifier on `shards.output` (a described shard set in the full pipeline)."""
    from .recipes.train_fusion import run as train_fusion

    cfg = cfg.model_copy(deep=True)
    cfg.data.shards = shards.output
    cfg.run.name = f"{cfg.run.name}-fusion"
    fp = fingerprint("train", shards.fingerprint, manifest_digest(shards.output), cfg.run.seed,
                     cfg.model.model_dump(), cfg.train.model_dump(), cfg.distributed.model_dump(),
                     cfg.data.loader.model_dump())

    def work(resume: bool) -> Dict[str, Any]:
        cfg.run.resume = resume
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
    """Run the embedded-default pipeline end to end; return what each stage did.

    The process group is created once here and lives as long as the process: DeepSpeed caches its groups at
    module level, so a group destroyed and re-created between two engines in one process breaks the second.
    """
    from .distributed import DistEnv, init_engine_process_group

    init_engine_process_group(DistEnv.from_environment(), cfg.distributed)
    return _run_stages(cfg, log)


def _run_stages(cfg: Config, log: Callable[[str], None]) -> List[StageResult]:
    synth = stage_synth(cfg, log)
    shards = stage_shards(cfg, synth, log)
    vlm = stage_finetune_vlm(cfg, shards, log)
    described = stage_describe(cfg, vlm, shards, log)
    train = stage_train(cfg, described, log)
    results = [synth, shards, vlm, described, train]
    return results
