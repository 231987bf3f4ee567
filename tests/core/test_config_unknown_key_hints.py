"""An unknown key inside a list entry is matched against that entry's fields for its "did you mean".

`phases: [{start_epoch: 0, trian_image_encoder: true}]` was answered "did you mean 'fusion.curriculum.ramp_end'?":
the hint was looked for among every key of the config, which never listed a list entry's fields. It is now
looked for among the fields of the section (or list entry) that holds the unknown key first."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config

PHASES = "phases: [{start_epoch: 0, trian_image_encoder: true}]"


def test_a_misspelt_key_in_a_files_list_entry_is_matched_within_the_entry(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(f"fusion:\n  curriculum:\n    {PHASES}\n")
    with pytest.raises(ConfigError, match=r"fusion\.curriculum\.phases\.0\.trian_image_encoder: unknown key; did "
                                          r"you mean 'fusion\.curriculum\.phases\.0\.train_image_encoder'\?"):
        load_config(path)


def test_a_misspelt_key_in_an_overridden_list_is_matched_within_the_entry():
    with pytest.raises(ConfigError, match=r"did you mean 'fusion\.curriculum\.phases\.1\.train_text_encoder'\?"):
        load_config("cpu-demo", ["fusion.curriculum.phases=[{start_epoch: 0}, {start_epoch: 2, train_txt_encoder: "
                                 "false}]"])


def test_a_misspelt_key_of_a_section_still_gets_its_hint():
    with pytest.raises(ConfigError, match=r"fusion\.curriculum\.ramp_edn: unknown key; did you mean "
                                          r"'fusion\.curriculum\.ramp_end'\?"):
        load_config("cpu-demo", ["fusion.curriculum={ramp_edn: 3}"])
