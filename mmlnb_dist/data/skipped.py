"""How a build's unreadable images (`manifest["skipped"]`: key, source, reason) are told: one wording for
`mmlnb-dist shards build` and the pipeline's shards stage."""
from __future__ import annotations

from typing import Dict, List, Sequence


def skipped_heading(skipped: Sequence[Dict[str, str]]) -> str:
    return f"skipped {len(skipped)} unreadable images (listed in manifest.json 'skipped')"


def skipped_summary(skipped: Sequence[Dict[str, str]], shown: int = 3) -> str:
    """One line: the heading, then the first `shown` images with why each was unreadable."""
    first = "; ".join(f"{s['source']} ({s['reason']})" for s in skipped[:shown])
    more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"{skipped_heading(skipped)}: {first}{more}"


def skipped_listing(skipped: Sequence[Dict[str, str]]) -> List[str]:
    """The heading and one indented line per image (the shards command prints them all)."""
    return [f"{skipped_heading(skipped)}:"] + [f"  {s['source']}  {s['reason']}" for s in skipped]
