"""README's profile table listed four of the six shipped profiles: clip-demo and clip-multilabel, which
`demo --recipe clip-multilabel` and the CLIP docs use, were missing from it (a user reading it learnt of them only
from an unknown-name error). Every shipped profile has its row, and every row names a shipped profile."""
from __future__ import annotations

import re
from pathlib import Path

from mmlnb_dist.config import shipped_profiles


def test_the_readme_profile_table_names_every_shipped_profile():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w-]+)\.yaml` \|", readme, flags=re.M)
    assert sorted(rows) == shipped_profiles()
