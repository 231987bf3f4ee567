"""Text overlap metrics for generated descriptions: ROUGE-L (F1 of the LCS) and sentence BLEU-4.

Implemented here (about 60 lines) rather than taken from a package: none of rouge-score, nltk, sacrebleu or
evaluate is in the pinned environment, and both metrics are short, well defined and easy to test. Tokens are
lower-cased words and punctuation marks (`tokenize`); both references and hypotheses go through it.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Dict, List, Sequence

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]")


def tokenize(text: str) -> List[str]:
    return _TOKEN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 (beta = 1) between two texts."""
    h, r = tokenize(hypothesis), tokenize(reference)
    lcs = lcs_length(h, r)
    if lcs == 0:
        return 0.0
    p, rc = lcs / len(h), lcs / len(r)
    return 2 * p * rc / (p + rc)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu4(hypothesis: str, reference: str, epsilon: float = 0.1) -> float:
    """Sentence BLEU-4 against one reference, uniform weights, brevity penalty, and smoothing method 1 of
    Chen & Cherry (2014): a zero n-gram match count becomes `epsilon` so one missing 4-gram does not zero it."""
    h, r = tokenize(hypothesis), tokenize(reference)
    if not h or not r:
        return 0.0
    log_p = 0.0
    for n in range(1, 5):
        hyp = _ngrams(h, n)
        total = max(sum(hyp.values()), 1)
        ref = _ngrams(r, n)
        match = sum(min(c, ref[g]) for g, c in hyp.items())
        log_p += math.log((match if match > 0 else epsilon) / total) / 4
    bp = 1.0 if len(h) > len(r) else math.exp(1 - len(r) / len(h))
    return bp * math.exp(log_p)


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> Dict[str, float]:
    """Mean ROUGE-L F1 and mean sentence BLEU-4 over aligned pairs."""
    if not hypotheses:
        return {"rouge_l": 0.0, "bleu4": 0.0, "n": 0}
    rl = [rouge_l(h, r) for h, r in zip(hypotheses, references)]
    bl = [bleu4(h, r) for h, r in zip(hypotheses, references)]
    return {"rouge_l": sum(rl) / len(rl), "bleu4": sum(bl) / len(bl), "n": len(rl)}
