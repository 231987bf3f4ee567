"""A damaged `best.json` (torn by a kill, edited by hand) stops a keep-best resume at its start with a ConfigError
naming the file and what to do, as `BestAdapter.restore` words it; the start-up check raised a bare
JSONDecodeError/KeyError traceback before."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.vlm.best import check_keep_best_resume

from support.vlm import finetune_config


@pytest.mark.parametrize("damaged", ['{"step": 6, "val/lo', '{"val/loss": 1.0}', "[]", "null"])
def test_a_damaged_best_record_stops_the_resume_naming_it(tmp_path, damaged):
    stored = finetune_config(tmp_path, "r", "vlm.max_steps=8", "vlm.eval_every=2", "vlm.keep_best=true")
    run_dir = Path(stored.run.dir)
    save_config(stored, run_dir / "config.yaml")
    (run_dir / "best.json").write_text(damaged)
    resume = finetune_config(tmp_path, "r", "vlm.max_steps=8", "vlm.eval_every=2", "vlm.keep_best=true",
                             "run.resume=true")
    with pytest.raises(ConfigError, match=r"best\.json cannot be read .*delete it"):
        check_keep_best_resume(resume, 8)
