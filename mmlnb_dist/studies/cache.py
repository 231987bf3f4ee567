"""What a study call computed and what it reused (the `cache` entry of its result and the line it prints): description
sets generated or reused, frozen-feature caches hit or computed, rows trained or up to date."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:
    from . import RowJob
    from .descriptions import DescriptionSets


def cache_counts(texts: "DescriptionSets", sources: Dict[str, Optional[str]], jobs: Dict[str, "RowJob"],
                 infos: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """What this call computed and what it reused, over the runs it trained (up-to-date runs use nothing):
    - description_misses: description sets generated now; description_hits: runs trained on a set they did not
      have to generate (every run of a source but the first, when that source was generated now);
    - feature_hits / feature_misses: frozen-feature caches found in the study cache / computed, summed over runs;
    - vlm_finetuned: whether the VLM was fine-tuned now (None: no row reads fine-tuned descriptions)."""
    trained = [job for name, job in jobs.items() if not infos[name].get("skipped")]
    uses: Dict[str, int] = {}
    for job in trained:
        source = sources[job.row]
        if source is not None:
            uses[source] = uses.get(source, 0) + 1
    hits = sum(n - (1 if source in texts.computed else 0) for source, n in uses.items())
    features = [infos[job.name].get("feature_cache") or {} for job in trained]
    return {"runs_trained": len(trained), "runs_up_to_date": len(jobs) - len(trained),
            "description_misses": len(texts.computed), "description_hits": hits,
            "feature_hits": sum(int(f.get("hits", 0)) for f in features),
            "feature_misses": sum(int(f.get("misses", 0)) for f in features),
            "vlm_finetuned": texts.vlm_finetuned, "description_sets": texts.summary()}


def format_cache(cache: Dict[str, Any]) -> str:
    line = (f"runs: {cache['runs_trained']} trained, {cache['runs_up_to_date']} up to date; frozen features: "
            f"{cache['feature_hits']} cache hits, {cache['feature_misses']} computed")
    if cache["description_sets"]:
        line += (f"; descriptions: {cache['description_misses']} set(s) generated, reused by "
                 f"{cache['description_hits']} run(s) ({', '.join(cache['description_sets'])})")
    return line
