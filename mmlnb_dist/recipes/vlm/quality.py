"""How good generated descriptions are: length distribution, empty and repeated shares, and overlap with the
reference descriptions where the input had them (ROUGE-L F1 and corpus BLEU-4, both from torchmetrics).

Text metrics are torchmetrics' own (`torchmetrics.functional.text`): its ROUGE lower-cases and splits on
non-alphanumerics; BLEU-4 is corpus-level with add-one smoothing, so one missing 4-gram does not zero it.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from ...data.reader import iter_shard_samples
from ...data.shardset import ShardSet

QUALITY_FILE = "quality_report.json"
"""Where `describe` writes the report, inside its output shard set (the pipeline's report reads it from there)."""


def reference_scores(hypotheses: Sequence[str], references: Sequence[str]) -> Dict[str, float]:
    """Mean ROUGE-L F1 over aligned pairs and corpus BLEU-4 against one reference each."""
    from torchmetrics.functional.text import bleu_score, rouge_score

    if not hypotheses:
        return {"rouge_l": 0.0, "bleu4": 0.0, "n": 0}
    rouge = float(rouge_score(list(hypotheses), list(references), rouge_keys="rougeL")["rougeL_fmeasure"])
    bleu = float(bleu_score(list(hypotheses), [[r] for r in references], n_gram=4, smooth=True))
    return {"rouge_l": rouge, "bleu4": bleu, "n": len(hypotheses)}


def class_naming(texts: Sequence[str], labels: Sequence[str], splits: Sequence[str],
                 keywords: Mapping[str, Sequence[str]]) -> Dict[str, Any]:
    """Share of descriptions that name their sample's class and no other (by `keywords`: class -> class-exclusive
    phrases), overall and per split. Val and test come from slides the VLM was not fine-tuned on: they are the
    honest figures; train shows what it memorised."""
    from ...data.synthetic import names_class

    hits: Dict[str, list] = {}
    for text, label, split in zip(texts, labels, splits):
        hits.setdefault(split, []).append(names_class(text, label, dict(keywords)))
    every = [h for split_hits in hits.values() for h in split_hits]
    return {"rate": sum(every) / max(len(every), 1),
            "by_split": {split: sum(h) / len(h) for split, h in sorted(hits.items())}}


def quality_report(shards: ShardSet, keywords: Optional[Mapping[str, Sequence[str]]] = None) -> Dict[str, Any]:
    """Length distribution, empty/repeated shares, and ROUGE-L/BLEU-4 against references where present; with
    `keywords` (class -> class-exclusive phrases, e.g. the synthetic set's `CLASS_KEYWORDS`) also the class-naming
    rate per split."""
    texts, hyps, refs, labels, splits = [], [], [], [], []
    for split, _, entry in shards.entries():
        for s in iter_shard_samples(shards.root / entry["file"]):
            t = s["txt"].decode("utf-8")
            texts.append(t)
            splits.append(split)
            labels.append(shards.classes[int(s["cls"])] if "cls" in s else None)
            ref = json.loads(s["json"]).get("reference_description") if "json" in s else None
            if ref:
                hyps.append(t)
                refs.append(ref)
    lengths = sorted(len(t.split()) for t in texts)
    counts = Counter(texts)

    def pct(q: float) -> float:
        # numpy's (linear) percentile; the element at index int(q * n) was the upper median, and p90 the max for n=10
        return float(np.percentile(lengths, 100 * q)) if lengths else 0.0

    report = {
        "n": len(texts),
        "words": {"mean": sum(lengths) / max(len(lengths), 1), "min": pct(0.0), "p50": pct(0.5),
                  "p90": pct(0.9), "max": pct(1.0)},
        "empty_share": sum(1 for t in texts if not t.strip()) / max(len(texts), 1),
        # Share of outputs identical to another output: a collapsed generator repeats itself.
        "repeated_share": sum(c for c in counts.values() if c > 1) / max(len(texts), 1),
        "distinct": len(counts),
        "reference": reference_scores(hyps, refs) if refs else None,
    }
    if keywords is not None:
        labelled = [(t, lab, sp) for t, lab, sp in zip(texts, labels, splits) if lab is not None]
        report["class_naming"] = class_naming(*zip(*labelled), keywords) if labelled else None
    return report


def format_report(report: Dict[str, Any]) -> str:
    w = report["words"]
    lines = [f"descriptions: {report['n']} ({report['distinct']} distinct)",
             f"words: mean {w['mean']:.1f}, min {w['min']:.0f}, median {w['p50']:g}, p90 {w['p90']:g}, "
             f"max {w['max']:.0f}",
             f"empty: {report['empty_share']:.1%}, same text as another description: {report['repeated_share']:.1%}"]
    ref = report.get("reference")
    if ref:
        lines.append(f"vs references (n={ref['n']}): ROUGE-L {ref['rouge_l']:.3f}, BLEU-4 {ref['bleu4']:.3f}")
    naming = report.get("class_naming")
    if naming:
        per_split = ", ".join(f"{split} {rate:.2f}" for split, rate in naming["by_split"].items())
        lines.append(f"names its class: {naming['rate']:.2f} ({per_split})")
    return "\n".join(lines)
