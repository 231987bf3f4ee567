"""`ablate --descriptions shards` (train every row on the text already in `data.shards`, no VLM stage) without
`--rows` failed before any run: the default "every row of the recipe" included fusion's `no_fine_tune`, which needs
the base VLM's descriptions, and the study refused it, so the command only worked with every other row listed by
hand. Like `vlm.finetune=false`, the row that cannot differ from the full model is now left out when no rows are
asked for, and still refused, naming why, when it is asked for."""
from __future__ import annotations

import pytest

from support.fusion import CPU_DEMO

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


@pytest.mark.parametrize("finetune", ["true", "false"])
def test_reference_text_without_rows_leaves_out_the_row_that_needs_the_base_vlm(tmp_path, finetune):
    from mmlnb_dist.studies import choose_rows, description_sources, study_rows

    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}", f"vlm.finetune={finetune}"])
    available, _ = study_rows(cfg)
    chosen = choose_rows(cfg, available, None, "shards")
    assert chosen == [r for r in available if r != "no_fine_tune"] and chosen[0] == "full"
    assert set(description_sources(cfg, chosen, "shards").values()) == {"shards"}
    assert "no_fine_tune" in choose_rows(cfg, available, None, "vlm") or finetune == "false"


def test_reference_text_still_refuses_the_row_when_it_is_asked_for(tmp_path):
    from mmlnb_dist.studies import run_study

    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"--descriptions shards: row\(s\) no_fine_tune compare against"):
        run_study(cfg, rows=["full", "no_fine_tune"], seeds=[0], descriptions="shards")
    assert not (tmp_path / cfg.run.name).exists()  # refused before any work
