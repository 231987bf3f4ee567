"""Which shard sets a run read, kept in its run folder, and whether two runs' scores may be compared.

A tracked run logs its shard sets as MLflow dataset inputs (`build_logger(datasets=...)`); the same logger also
writes them to `<run_dir>/datasets.json` ({stage: [spec, ...]}), whatever the backends, so a run trained without
mlflow and imported later (`tracking import`) logs the inputs the live run would have logged.

The registry moves an alias on a score only when both runs were scored on one set of patches (`not_comparable`):
a run that recorded no input for the metric's split was scored on an unknown set, and is never compared.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import UserError
from ..files import replace_text
from .metric_name import has_metric
from .params import effective_param

DATASETS_RECORD = "datasets.json"
"""`<run_dir>/datasets.json`: {stage: the dataset specs its logger was given (`ShardSet.dataset_specs()`)}."""
SCORED_SPLITS = ("train", "val", "test")
"""Splits a metric may be scored on (`best/val/x`, `val/x`, `test/x`): the contexts of a run's dataset inputs."""


def record_datasets(run_dir: Path, stage: str, specs: Sequence[Dict[str, Any]]) -> Path:
    """Record in `run_dir` the shard sets `stage` reads (a fresh or resumed run replaces its stage's entry)."""
    path = Path(run_dir) / DATASETS_RECORD
    record = _read(path)
    record[stage] = [dict(s) for s in specs]
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_text(path, json.dumps(record, indent=1))
    return path


def recorded_datasets(run_dir: Path, stage: str) -> Optional[List[Dict[str, Any]]]:
    """The dataset specs `stage` of run folder `run_dir` recorded, or None (trained before they were recorded)."""
    specs = _read(Path(run_dir) / DATASETS_RECORD).get(stage)
    return list(specs) if isinstance(specs, list) else None


def recorded_stages(run_dir: Path) -> List[str]:
    """The stages whose shard sets run folder `run_dir` recorded (a training folder: train; `<name>-describe`:
    describe), in their order there."""
    return list(_read(Path(run_dir) / DATASETS_RECORD))


def other_stage(run_dir: Path, stage: str = "train") -> Optional[Tuple[str, Optional[str]]]:
    """(the stage, its MLflow run id or None) whose folder `run_dir` is when it is another stage's than `stage`
    (`<name>-describe`, `<name>-evaluate-val`): one a tracking record with a run id (`tracking/<s>.json`) or the
    shard-set record names while neither names `stage`. None when `stage` is recorded there, or nothing is (a folder
    kept before either record existed is taken as `stage`'s). The one test `register --run` and `tracking import`
    share: `register` looked at the tracking records alone and sent an untracked describe folder to an import that
    refused it as describe's."""
    from .journal import JOURNAL_DIR, recorded_run

    run_dir = Path(run_dir)
    if recorded_run(run_dir, stage).get("run_id") or recorded_datasets(run_dir, stage) is not None:
        return None
    tracked = [(p.stem, rec["run_id"]) for p in sorted((run_dir / JOURNAL_DIR).glob("*.json"))
               if "." not in p.stem and p.stem != stage and (rec := recorded_run(run_dir, p.stem)).get("run_id")]
    found = tracked + [(s, None) for s in recorded_stages(run_dir) if s != stage and s not in dict(tracked)]
    return found[0] if found else None


class DataChangedError(UserError):
    """A resumed run would read other shard sets than the ones it was trained on."""


def check_resumed_datasets(run_dir: Path, stage: str, specs: Sequence[Dict[str, Any]]) -> None:
    """Refuse to resume `stage` of `run_dir` on other shard sets than it recorded (a set rebuilt or replaced at the
    same path since: the config, which names the folder, does not change). Compared by manifest digest per split,
    so a set moved elsewhere resumes; a run that recorded no digests has nothing to compare."""
    def digests(entries: Sequence[Dict[str, Any]]) -> Dict[str, Tuple[str, str]]:
        return {str(e.get("context")): (str(e.get("source")), (e.get("profile") or {}).get("manifest_sha256"))
                for e in entries}

    old, new = digests(recorded_datasets(run_dir, stage) or []), digests(specs)
    changed = [split for split in sorted(set(old) & set(new)) if old[split][1] and new[split][1]
               and old[split][1] != new[split][1]]
    if changed:
        lines = "\n".join(f"  {split}: trained on {old[split][0]} (manifest {old[split][1][:12]}), now "
                          f"{new[split][0]} (manifest {new[split][1][:12]})" for split in changed)
        raise DataChangedError(
            f"{run_dir} (run.resume=true) was trained on other shards than data.shards holds now:\n{lines}\n"
            f"Resuming would train the rest of the run on other patches and pick its best checkpoint over two "
            f"validation sets. Put the shard set it was trained on back, or start a new run under another run.name.")


def _read(path: Path) -> Dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def metric_split(metric: str) -> Optional[str]:
    """The split `metric` was scored on (`best/val/x`, `val/x`: val), or None when its name says none."""
    parts = metric.split("/")
    return parts[-2] if len(parts) >= 2 and parts[-2] in SCORED_SPLITS else None


def scored_on(run, metric: str) -> Optional[Tuple[str, str]]:
    """(name, identity) of the shard set whose split `metric` was computed on (`best/val/x` and `val/x`: the
    run's `val` dataset input), or None when the run logged none. The identity is the set of patches: the
    manifest digest, for a described set the digest of the set its descriptions were written for (descriptions
    come from the model's own VLM, so they are part of what is compared)."""
    split = metric_split(metric)
    for ds_input in getattr(run.inputs, "dataset_inputs", None) or []:
        if next((t.value for t in ds_input.tags if t.key == "mlflow.data.context"), None) != split:
            continue
        profile = json.loads(ds_input.dataset.profile) if ds_input.dataset.profile else {}
        described = ((profile.get("provenance") or {}).get("describe") or {}).get("source_manifest_sha256")
        return ds_input.dataset.name, described or profile.get("manifest_sha256") or ds_input.dataset.digest
    return None


def unscored(holder_run, holder_version: str, metric: str) -> Optional[str]:
    """Why the alias holder (version `holder_version`, run `holder_run`) has no `metric` to compare with (None when
    it has): registered under another selection metric or by another recipe. Read as no score, "0.8 beats None"
    moved the alias on no comparison at all; the registry keeps it with its holder, as for unknown patches."""
    if has_metric(holder_run.data.metrics, metric):
        return None
    return (f"{metric} is not comparable: version {holder_version}'s run {holder_run.info.run_id} never logged "
            f"{metric} (registered under another selection metric or recipe)")


def not_comparable(holder_run, holder_version: str, run, metric: str,
                   metric_settings: Sequence[str] = ()) -> Optional[str]:
    """Why `run`'s `metric` cannot be compared with the alias holder's (version `holder_version`, run
    `holder_run`), or None when it can: both computed with the same `metric_settings` (config keys, logged as run
    params, that change how the recipe computes its metrics: clip's `clip.top_k`) and scored on one set of
    patches. A metric of no split (`train_epoch/x`) has no dataset input to check, and is compared."""
    for key in metric_settings:  # a top-5 F1 "beats" a top-3 F1 of the same weights: another metric
        # the value each run was scored with: a resume that changed it logged the new one as a tag
        theirs_value, ours_value = effective_param(holder_run, key), effective_param(run, key)
        if theirs_value != ours_value:
            return (f"{metric} is not comparable: version {holder_version} was scored with {key}="
                    f"{theirs_value if theirs_value is not None else '(not logged)'}, this run with {key}="
                    f"{ours_value if ours_value is not None else '(not logged)'}")
    split = metric_split(metric)
    if split is None:
        return None
    theirs, ours = scored_on(holder_run, metric), scored_on(run, metric)
    if theirs and ours:
        if theirs[1] == ours[1]:
            return None
        return (f"{metric} is not comparable: version {holder_version} was scored on {theirs[0]}, this run on "
                f"{ours[0]} (other patches)")
    missing = [who for who, scored in ((f"version {holder_version}'s run {holder_run.info.run_id}", theirs),
                                       (f"this run ({run.info.run_id})", ours)) if scored is None]
    return (f"{metric} is not comparable: {' and '.join(missing)} logged no '{split}' dataset input, so what it "
            f"was scored on is unknown (a run trained with tracking.log_dataset=false, or imported by `tracking "
            f"import` from a folder that recorded none)")
