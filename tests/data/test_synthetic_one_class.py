"""A synthetic set with one class: its noisy descriptions cannot name a wrong class, so they are generic."""
import json

import numpy as np
import pytest

from mmlnb_dist.data.synthetic import CLASS_KEYWORDS, make_synthetic_dataset, noisy_description


def _names_any_class(text: str) -> bool:
    low = text.lower()
    return any(w in low for words in CLASS_KEYWORDS.values() for w in words)


def test_a_noisy_description_with_no_other_class_is_generic():
    for seed in range(20):
        text = noisy_description("UD", np.random.default_rng(seed), classes=["UD"])
        assert text and not _names_any_class(text), text


def test_a_one_class_set_with_noisy_descriptions_is_written(tmp_path):
    summary = make_synthetic_dataset(tmp_path, n=8, size=16, n_slides=2, noisy_description_rate=0.5, seed=0,
                                     classes=["PD"])
    assert summary["class_counts"] == {"PD": 8} and summary["noisy_descriptions"] == 4
    descs = [json.loads(line)["description"] for line in (tmp_path / "descriptions.jsonl").read_text().splitlines()]
    assert len(descs) == 8
    assert sum(not _names_any_class(d) for d in descs) == 4  # the noisy ones: generic, never a wrong class


def test_a_class_named_twice_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="name UD more than once"):
        make_synthetic_dataset(tmp_path / "out", n=8, size=16, n_slides=2, classes=["UD", "UD"])
    assert not (tmp_path / "out").exists()
