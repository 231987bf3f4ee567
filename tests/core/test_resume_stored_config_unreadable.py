"""A resume whose run folder holds a `config.yaml` that cannot be what the run wrote (edited by hand into broken
YAML, a list, an empty file, a section that is a number, a key written twice) is refused naming the file and what
is wrong with it. It was a yaml ParserError or AttributeError traceback; an empty file took every setting for one
"added since the run started" (a warning listing the whole config) and then refused the resume over the defaults;
a key written twice kept the second without a word."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.recipe import check_resume_config
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe


@pytest.mark.parametrize("text, why", [
    ("train: {epochs: [\n", r"not YAML"),
    ("- a\n- b\n", r"not a mapping of sections \(a list\)"),
    ("", r"empty"),
    ("# only a comment\n", r"empty"),
    ("train: 5\n", r"section 'train' is not a mapping \(5\)"),
    ("train:\n  epochs: 9\n  epochs: 3\n", r"not YAML.*epochs"),
])
def test_an_unreadable_stored_config_is_refused_naming_the_file(tmp_path, text, why, caplog):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r"])
    save_config(cfg, cfg.run.dir / "config.yaml")
    (cfg.run.dir / "config.yaml").write_text(text)
    resumed = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r", "run.resume=true"])
    with pytest.raises(UserError, match=rf"(?s){cfg.run.dir / 'config.yaml'}: .*{why}.*another run\.name"):
        check_resume_config(resumed, cfg.run.dir, FusionRecipe)
    assert "added since the run started" not in caplog.text
    assert not (cfg.run.dir / "resume_changes.json").exists()
