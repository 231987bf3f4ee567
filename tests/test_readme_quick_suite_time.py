"""The quick suite's time has one source, BENCHMARKS.md ("CI wall time"): the README said about 8 minutes while
BENCHMARKS.md said about 7, each edited alone; the README's figure must be BENCHMARKS.md's."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK = re.compile(r"quick suite.{0,400}?about (\d+) minutes", re.S)


def _minutes(name: str) -> str:
    text = (ROOT / name).read_text(encoding="utf-8")
    found = QUICK.search(text)
    assert found, f"{name} gives no quick-suite time"
    return found.group(1)


def test_the_readme_gives_the_quick_suite_time_benchmarks_md_records():
    assert _minutes("README.md") == _minutes("BENCHMARKS.md")
