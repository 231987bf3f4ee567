"""Who wrote a shard set's descriptions, and whether two writers are the same: a text-reading model fed text of
another writer than its training text's (reference descriptions to a model trained on what the VLM wrote, or
another adapter's) reads words unlike its training text, and its scores there say little about new patches.

    writer = shard_text_writer(ShardSet.open(path).manifest)   # {"model", "adapter_sha256"} or REFERENCE
    same_writer(writer, export_config["descriptions_written_by"] or REFERENCE)
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Dict, List, Optional

REFERENCE = "reference"
"""The writer of a shard set's own text (no `describe` in its provenance): reference descriptions."""
TINY_KEYS = ("tiny_seed", "tiny_vision")
"""What tells two `tiny` VLMs apart: `tiny` names a random model built from `vlm.tiny_seed` and `vlm.tiny_vision`."""
WEIGHTS_KEY = "model_weights"
"""describe's digest of the base VLM's weight bytes (a local folder or a cached hub id; not `tiny`)."""


def shard_text_writer(manifest: Dict[str, Any]) -> Any:
    """Who wrote a shard set's `txt`: the VLM and adapter of its `describe` provenance (and the tiny model's seed
    and tower where recorded), else `REFERENCE`."""
    made = (manifest.get("provenance") or {}).get("describe")
    if not made:
        return REFERENCE
    return {"model": made.get("model"), "adapter_sha256": made.get("adapter_sha256"),
            **{k: made[k] for k in (*TINY_KEYS, WEIGHTS_KEY) if k in made}}


def trained_writer(model_meta: Dict[str, Any]) -> Any:
    """Who wrote a model's training text, from its export or registered metadata (`descriptions_written_by`:
    null means the shard set's own text); None when the model predates the record (nothing to compare)."""
    if "descriptions_written_by" not in model_meta:
        return None
    return model_meta["descriptions_written_by"] or REFERENCE


def writer_name(writer: Any) -> str:
    """How a message names `writer` after the word "descriptions"."""
    if writer == REFERENCE:
        return "from the shard set itself (reference text, not written by a VLM)"
    sha = writer.get("adapter_sha256")
    tiny = ", ".join(f"{k}={writer[k]}" for k in TINY_KEYS if k in writer) if writer.get("model") == "tiny" else ""
    return (f"written by the VLM {writer.get('model')} ({f'adapter sha256 {sha[:12]}' if sha else 'no adapter'})"
            + (f" of {tiny}" if tiny else ""))  # two tiny models differ by these alone


def same_writer(a: Any, b: Any) -> bool:
    """Whether writers `a` and `b` write alike: the same adapter (by digest), or without adapters the same base
    weights (`WEIGHTS_KEY`, where both record it), else the same VLM name (for `tiny`, also the same `TINY_KEYS`
    where both record them)."""
    if REFERENCE in (a, b):
        return a == b
    if a.get("adapter_sha256") or b.get("adapter_sha256"):  # the fine-tune decides, whatever the base is called
        return a.get("adapter_sha256") == b.get("adapter_sha256")
    if a.get(WEIGHTS_KEY) and b.get(WEIGHTS_KEY):  # the weights decide: a hub id and a local copy of it write
        return a[WEIGHTS_KEY] == b[WEIGHTS_KEY]   # alike, a folder whose weights were replaced does not
    if a.get("model") != b.get("model"):
        return False
    # two `tiny` models of other seeds or towers are two random models: their text differs though the name does
    # not (a key missing on one side, a record older than it, is not judged)
    return a.get("model") != "tiny" or all(a[k] == b[k] for k in TINY_KEYS if k in a and k in b)


def mismatch(model: str, trained: Any, writer: Any, inputs: str, shards: Optional[str] = None) -> str:
    """The warning for `inputs` (e.g. "3 of 4 images here") whose descriptions `writer` wrote, fed to `model`
    whose training descriptions `trained` wrote; it names how to describe them as in training: `predict`'s
    `--vlm` / `--adapter`, or for a shard set `shards` that `evaluate` reads, the `describe` command to run first."""
    if trained == REFERENCE:
        remedy = "give them reference descriptions like the training ones"
    else:
        vlm = f"--vlm {trained.get('model')}" + (
            f" --adapter <the adapter with sha256 {trained['adapter_sha256'][:12]}>"
            if trained.get("adapter_sha256") else "")
        remedy = (f"to describe them as in training, give {vlm}" if shards is None else
                  f"to describe them as in training: mmlnb-dist describe {vlm} --shards {shards} --out "
                  f"{shards}-described, then evaluate with data.shards={shards}-described")
    return (f"{model} was trained on descriptions {writer_name(trained)}; {inputs} carry descriptions "
            f"{writer_name(writer)}: the model reads text unlike its training text, so its predictions on them may "
            f"mislead ({remedy})")


def text_writer_warnings(model_uri: str, model_meta: Dict[str, Any], items: List[Dict[str, Any]]) -> List[str]:
    """One line per writer of the inputs' descriptions that differs from the writer of the model's training text
    (inputs whose writer is unknown, e.g. a --descriptions file, are not judged)."""
    trained = trained_writer(model_meta)
    if not model_meta.get("reads_text") or trained is None:
        return []
    others = Counter(json.dumps(it["written_by"], sort_keys=True) for it in items
                     if it.get("written_by") is not None and not same_writer(it["written_by"], trained))
    return [mismatch(model_uri, trained, json.loads(w), f"{n} of {len(items)} images here")
            for w, n in others.items()]
