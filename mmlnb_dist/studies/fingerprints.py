"""What a study row's run is fingerprinted with (`job_fingerprint`): the config sections its recipe says change its
results, with the shard set it trains on named by what it holds (its manifest's digest), not by the folder it lies
in: a study rerun on its shard set moved elsewhere keeps its finished rows instead of training them all again."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from ..config import Config
from ..core.config import Section
from ..core.recipe import TRAIN_CADENCE
from ..data.shardset import MANIFEST, ShardSet
from ..pipeline import fingerprint, local_inputs, read_stage, stopped_reading_elsewhere
from ..recipes import recipe_class


def _result_settings(run_cfg: Config) -> Dict[str, Any]:
    sections = getattr(recipe_class(run_cfg.train.recipe), "result_sections", None)
    dumped = {**run_cfg.model_dump(mode="json"), "distributed": run_cfg.distributed.results_dump()}
    return {k: v for k, v in dumped.items() if sections is None or k in sections}


def job_fingerprint(run_cfg: Config) -> str:
    """What a row's result depends on: the config sections the recipe says change its results, `data.shards` as
    its shard set's digest. A run recorded under the fingerprint that held the folder instead is kept while the set
    stays there (no retraining on upgrade), and a run stopped on the set in another folder gets that fingerprint
    (its recipe refuses to resume on a moved set: it starts again); a folder that is no shard set is named by its
    path (its run refuses it)."""
    full = _result_settings(run_cfg)
    lean = _without_cadence(full)
    # features, weights or a model folder a setting names, by what they hold (empty for hub names)
    local = [found for section in lean if isinstance(getattr(run_cfg, section, None), Section)
             for found in local_inputs(getattr(run_cfg, section), f"{section}.")]
    run_dir = Path(run_cfg.run.dir)
    held = read_stage(run_dir).get("fingerprint")

    def of(settings: Dict[str, Any], digest: Optional[str] = None) -> str:
        if digest is not None:
            settings = {**settings, "data": {**settings["data"], "shards": digest}}
        return fingerprint("study-run", settings, *local)

    shards = Path(run_cfg.data.shards)
    if "data" not in lean or not (shards / MANIFEST).is_file():
        # a row recorded while the fingerprint held the cadence settings keeps its record (no retraining on upgrade)
        earlier = of(full)
        return earlier if earlier == held else of(lean)
    digest = ShardSet.open(shards).digest
    # a row recorded under an earlier form (the cadence settings in; the folder instead of the digest) is kept
    kept = next((f for f in (of(full), of(full, digest), of(lean)) if f == held), None)
    if kept is not None:
        return kept
    if stopped_reading_elsewhere(run_dir, "data.shards", shards):  # its resume on the moved set is refused: rebuilt
        return of(lean)
    return of(lean, digest)


def _without_cadence(settings: Dict[str, Any]) -> Dict[str, Any]:
    """`settings` less the keys that change no weight (`TRAIN_CADENCE`: logging, checkpoint cadence, preflight):
    a rerun changing only these keeps a finished row (its resume accepts them), as the pipeline's train stage."""
    out = dict(settings)
    for dotted, names in TRAIN_CADENCE.items():
        head, _, rest = dotted.partition(".")
        if not isinstance(out.get(head), dict):
            continue
        out[head] = section = dict(out[head])
        if rest:  # one level down (data.loader)
            if not isinstance(section.get(rest), dict):
                continue
            section[rest] = {k: v for k, v in section[rest].items() if k not in names}
        else:
            out[head] = {k: v for k, v in section.items() if k not in names}
    return out
