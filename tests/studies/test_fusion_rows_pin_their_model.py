"""Each fusion ablation row trains the model its description names, whatever the study's config holds: the rows are
overrides on that config, and a row that set only what it changes kept the rest from it. On a config with
`fusion.model.mode=concat` and the curriculum off (a user's own profile, a tuned best.yaml), `full` trained PRMF
without the curriculum (no different from `no_curriculum`), and `no_curriculum` trained concatenation."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.studies import row_config, study_rows

# row -> (fusion.model.mode, fusion.curriculum.enabled) of the paper's Table 2
CLAIMED = {"full": ("prmf", True), "no_text": ("image_only", True), "no_image": ("text_only", True),
           "no_fine_tune": ("prmf", True), "concat": ("concat", True), "no_curriculum": ("prmf", False),
           "fixed_alpha": ("fixed_alpha", True)}


@pytest.mark.parametrize("base", [["fusion.model.mode=concat", "fusion.curriculum.enabled=false"],
                                  ["fusion.model.mode=fixed_alpha", "fusion.model.fixed_alpha=0.9"]])
def test_every_row_trains_what_it_claims_on_any_study_config(tmp_path, base):
    cfg = load_config("cpu-demo", base)
    available, _ = study_rows(cfg)
    assert set(available) == set(CLAIMED)
    for row, (mode, curriculum) in CLAIMED.items():
        got = row_config(cfg, row, available[row][1], 0, tmp_path).fusion
        assert (got.model.mode, got.curriculum.enabled) == (mode, curriculum), row
        if mode == "fixed_alpha":
            assert got.model.fixed_alpha == 0.5
