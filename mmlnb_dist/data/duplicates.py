"""Images that are one image. Copies of a file under two names (a patch export run twice, one folder merged into
another, a slide saved as two files) are split like any other images: a copy in train and another in val or test is
scored on what the model trained on, so the metrics overstate; a copy under another label is a labelling conflict.

The build re-encodes deterministically, so such copies are byte-identical in the shards: `DuplicateFinder` keeps an
8-byte digest of every encoded image (no second read of the inputs; about 170 bytes a sample in memory) and
`report` returns the groups that span splits or labels, which the build warns about and lists in manifest.json
"duplicates". Copies within one split under one label (a caption dataset's rows of one image) are not reported."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Dict, List, Tuple

log = logging.getLogger(__name__)

Member = Tuple[str, str, str]
"""(split, key, label) of one sample."""


def image_digest(data: bytes) -> str:
    """Digest of an encoded image (hex, 16 characters: a chance collision needs about 4e9 images)."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class DuplicateFinder:
    """Collects (digest, split, key, label) of a build's samples; `report` lists the copies that matter."""

    def __init__(self) -> None:
        self._first: Dict[str, Member] = {}
        self._copies: Dict[str, List[Member]] = {}

    def add(self, digest: str, split: str, key: str, label: str) -> None:
        member = (split, key, label)
        first = self._first.setdefault(digest, member)
        if first is not member:
            self._copies.setdefault(digest, [first]).append(member)

    def report(self, multilabel: bool) -> Dict[str, List[List[Dict[str, str]]]]:
        """{"across_splits": groups in more than one split, "conflicting_labels": groups under more than one label
        (single-label builds; a multi-label sample's label is only its first)}; a group is a list of
        {"split", "key", "label"}, sorted."""
        across, conflicting = [], []
        for members in self._copies.values():
            group = [{"split": s, "key": k, "label": lab} for s, k, lab in sorted(members)]
            if len({s for s, _, _ in members}) > 1:
                across.append(group)
            if not multilabel and len({lab for _, _, lab in members}) > 1:
                conflicting.append(group)
        return {"across_splits": sorted(across, key=_order), "conflicting_labels": sorted(conflicting, key=_order)}


def _order(group: List[Dict[str, str]]) -> Tuple[str, str]:
    return group[0]["split"], group[0]["key"]


def warn_duplicates(report: Dict[str, List[List[Dict[str, str]]]], where: str) -> None:
    """One warning per kind, with the first examples and the remedy."""
    def examples(groups: List[List[Dict[str, str]]]) -> str:
        shown = ["=".join(f"{m['split']}/{m['key']} ({m['label']})" for m in g) for g in groups[:3]]
        return "; ".join(shown) + ("; ..." if len(groups) > 3 else "")

    across, conflicting = report["across_splits"], report["conflicting_labels"]
    if across:
        log.warning("%d image(s) in more than one split of %s, as copies under other names: val/test metrics score "
                    "what the model trained on and overstate (%s). Remove the copies, or give each copy the "
                    "slide_id of its original so the split keeps them together; all are listed in manifest.json "
                    "'duplicates'", len(across), where, examples(across))
    if conflicting:
        log.warning("%d image(s) under more than one label in %s (%s): fix the labels or drop the copies; listed in "
                    "manifest.json 'duplicates'", len(conflicting), where, examples(conflicting))


def warn_held_out_copies(shards: Path, split: str) -> None:
    """Warn when samples of `split` of the shard set at `shards` are copies of train images (metrics on `split`
    overstate); silent for train, for a set without copies, and for a folder that is no shard set (whoever reads it
    next names that)."""
    from .shardset import ShardError, ShardSet

    try:
        n = ShardSet.open(shards).copies_of_train().get(split, 0)
    except ShardError:
        return
    if n:
        log.warning("%d %s sample(s) of %s are copies of train images (manifest.json 'duplicates'): the metrics "
                    "below score them as held out, so they overstate", n, split, shards)
