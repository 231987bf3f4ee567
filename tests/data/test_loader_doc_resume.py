"""docs/data.md describes the loader's mid-epoch resume, which `ShardLoader` has (`data_position`, `resume_from`;
tests/data/test_data_position.py); it said the loader could not resume in the middle of an epoch."""
from __future__ import annotations

from pathlib import Path

from mmlnb_dist.data.loader import ShardLoader

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def test_the_loader_section_describes_mid_epoch_resume():
    text = DOC.read_text(encoding="utf-8")
    loader = text[text.index("## The loader"):text.index("## The synthetic set")]
    assert hasattr(ShardLoader, "resume_from") and hasattr(ShardLoader, "data_position")
    assert "Not supported (yet): resuming in the middle of an epoch" not in loader
    assert "resume_from" in loader and "data_position" in loader
