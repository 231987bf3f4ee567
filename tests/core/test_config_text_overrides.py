"""An override of a text or path field is the text as typed, not YAML.

Overrides were parsed as YAML first, and only a number or a boolean was turned back into the typed text: `#` started
a YAML comment (`run.name=exp #1` named the run `exp`, a prompt lost everything after its `#`), and `: ` or braces
made a mapping (`vlm.prompt=Describe: the nuclei`, `clip.model.zero_shot_prompt={label}`, whose default holds
`{label}`), refused as "Input should be a valid string" without saying what the text had been read as. A field
that takes text (str, a path, a choice of words, or an Optional of those) now gets the text; `null`, `~` or nothing
still unset an Optional one. Other fields are still read as YAML, and a refusal shows what the value was read as."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


@pytest.mark.parametrize("key, typed", [
    ("run.name", "exp #1"),
    ("vlm.prompt", "Describe the image #carefully"),
    ("vlm.prompt", "Describe: the nuclei"),
    ("vlm.prompt", "[draft] describe it"),
    ("vlm.prompt", "'quoted' text"),
    ("tracking.experiment", "{team}: night runs"),
])
def test_a_text_field_gets_the_text_as_typed(key, typed):
    cfg = load_config("cpu-demo", [f"{key}={typed}"])
    section, name = key.split(".")
    assert getattr(getattr(cfg, section), name) == typed


def test_a_prompt_template_with_braces_is_text():
    cfg = load_config("clip-demo", ["clip.model.zero_shot_prompt={label}"])
    assert cfg.clip.model.zero_shot_prompt == "{label}"


def test_a_path_and_an_optional_text_field_get_the_text_and_null_still_unsets():
    # (a registered model name cannot hold ':', a path can)
    cfg = load_config("cpu-demo", ["data.shards=shards/a: v2 #2", "tracking.register_name=model v2 #2"])
    assert cfg.data.shards == Path("shards/a: v2 #2") and cfg.tracking.register_name == "model v2 #2"
    for unset in ("null", "~", ""):
        assert load_config("cpu-demo", [f"tracking.register_name={unset}"]).tracking.register_name is None


def test_a_value_read_as_yaml_that_is_refused_says_what_it_was_read_as(capsys):
    # train.epochs takes a number, so its value is still YAML: the refusal shows the mapping it became
    with pytest.raises(ConfigError, match=r"train\.epochs: .*\(got \{'a': 1\}"):
        load_config("cpu-demo", ["train.epochs={a: 1}"])
    assert main(["config", "show", "--config", "cpu-demo", "train.epochs=x: 3"]) == 2
    assert "(got {'x': 3}" in capsys.readouterr().err


@pytest.mark.parametrize("typed, expected", [('"exp 1"', "exp 1"), ("'Describe'", "Describe"),
                                             ('"a: b # c"', "a: b # c"), ("'it''s'", "it's"),
                                             ('"unbalanced', '"unbalanced')])
def test_a_quoted_text_override_loses_its_quotes(typed, expected):
    """Quoting a text value (as a shell user or a flag's override does: `run.name="exp 1"`) is YAML's quoting, as
    it was before text was taken as typed: the quotes went into run folder names and file paths."""
    from mmlnb_dist.config import load_config

    assert load_config(None, [f"run.name={typed}"]).run.name == expected
