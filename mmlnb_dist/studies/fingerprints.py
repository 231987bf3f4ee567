"""What a study row's run is fingerprinted with (`job_fingerprint`): the config sections its recipe says change its
results, with the shard set it trains on named by what it holds (its manifest's digest), not by the folder it lies
in: a study rerun on its shard set moved elsewhere keeps its finished rows instead of training them all again."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from ..config import Config
from ..core.config import Section
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
    settings = _result_settings(run_cfg)
    # features, weights or a model folder a setting names, by what they hold (empty for hub names)
    local = [found for section in settings if isinstance(getattr(run_cfg, section, None), Section)
             for found in local_inputs(getattr(run_cfg, section), f"{section}.")]
    with_folder = fingerprint("study-run", settings, *local)
    shards = Path(run_cfg.data.shards)
    if "data" not in settings or not (shards / MANIFEST).is_file():
        return with_folder
    settings["data"] = {**settings["data"], "shards": ShardSet.open(shards).digest}
    run_dir = Path(run_cfg.run.dir)  # (a run stopped on the set elsewhere would be refused its resume: rebuilt)
    if read_stage(run_dir).get("fingerprint") == with_folder or \
            stopped_reading_elsewhere(run_dir, "data.shards", shards):
        return with_folder
    return fingerprint("study-run", settings, *local)
