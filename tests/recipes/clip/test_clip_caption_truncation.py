"""Captions longer than clip.model.towers.max_length were cut to it with no word: a run on long captions trained on
their first tokens only, unknowingly. The first batch that cuts any now warns once, with how many captions were cut,
the longest one's length and the max_length (later batches do not repeat it; short captions warn nothing)."""
from __future__ import annotations

import logging

import torch

LOGGER = "mmlnb_dist.recipes.clip.towers"


def _towers(max_length: int):
    from mmlnb_dist.recipes.clip.config import ClipTowersConfig
    from mmlnb_dist.recipes.clip.towers import build_towers

    torch.manual_seed(0)
    cfg = ClipTowersConfig.model_validate({"name": "tiny", "max_length": max_length, "unfreeze_blocks": 0,
                                           "tiny": {"layers": 1}})
    return build_towers(cfg, image_size=32)


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_cut_captions_are_counted_and_reported_once(caplog):
    towers = _towers(max_length=8)
    long = " ".join(["cell"] * 20)  # 20 word tokens + [CLS] + [SEP]
    full = len(towers.tokenizer(long)["input_ids"])
    exact = " ".join(["cell"] * 6)  # 6 + 2 special tokens: fits exactly, not cut
    assert len(towers.tokenizer(exact)["input_ids"]) == 8
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        enc = towers.tokenize([long, "stroma", long, exact])
        assert enc["input_ids"].shape[1] == 8
        towers.tokenize([long])
    said = _warnings(caplog)
    assert len(said) == 1, said
    assert "2 of 4 captions" in said[0] and f"{full} tokens" in said[0], said[0]
    assert "clip.model.towers.max_length" in said[0] and " 8" in said[0], said[0]


def test_captions_that_fit_warn_nothing(caplog):
    towers = _towers(max_length=8)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        towers.tokenize(["stroma", " ".join(["cell"] * 6)])
    assert _warnings(caplog) == []


def test_open_clip_towers_report_cut_captions_the_same_way(caplog):
    """open_clip's tokenizer cut captions at its context length without a word (the transformers towers warn):
    the same single warning, counting the cut captions of the batch and the longest one's length."""
    from mmlnb_dist.recipes.clip.config import ClipTowersConfig
    from mmlnb_dist.recipes.clip.towers import build_towers

    torch.manual_seed(0)
    cfg = ClipTowersConfig.model_validate({"name": "tiny-open_clip", "max_length": 8, "unfreeze_blocks": 0,
                                           "tiny": {"layers": 1}})
    towers = build_towers(cfg, image_size=32)
    long = " ".join(["cell"] * 20)
    full = len(towers.tokenizer.encode(long)) + 2  # <start_of_text> ... <end_of_text>
    exact = " ".join(["cell"] * 6)  # 6 + 2 special tokens: fits exactly, not cut
    assert len(towers.tokenizer.encode(exact)) + 2 == 8
    logger = "mmlnb_dist.recipes.clip.openclip_towers"
    with caplog.at_level(logging.WARNING, logger=logger):
        assert towers.tokenize([long, "stroma", long, exact])["input_ids"].shape[1] == 8
        towers.tokenize([long])
    said = [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == logging.WARNING]
    assert len(said) == 1, said
    assert "2 of 4 captions" in said[0] and f"{full} tokens" in said[0], said[0]
    assert "clip.model.towers.max_length 8" in said[0], said[0]


def test_a_bert_text_branch_reports_cut_captions_the_same_way(caplog):
    """The BERT baseline's text branch (clip.model.text_encoder) cut captions at clip.model.towers.max_length
    without a word, unlike the CLIP towers: the same single warning."""
    from mmlnb_dist.recipes.clip.branches import build_text_branch
    from mmlnb_dist.recipes.clip.config import ClipModelConfig

    cfg = ClipModelConfig.model_validate({"fusion": "text_only", "text_encoder": "tiny-bert",
                                          "towers": {"max_length": 8, "unfreeze_blocks": 0}})
    torch.manual_seed(0)
    branch = build_text_branch(cfg)
    long = " ".join(["cell"] * 20)
    full = len(branch.encoder.tokenizer(long)["input_ids"])
    exact = " ".join(["cell"] * 6)
    assert len(branch.encoder.tokenizer(exact)["input_ids"]) == 8
    logger = "mmlnb_dist.recipes.clip.branches"
    with caplog.at_level(logging.WARNING, logger=logger):
        assert branch.tokenize([long, "stroma", long, exact])["input_ids"].shape[1] == 8
        branch.tokenize([long])
        branch.tokenize(["stroma"])
    said = [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == logging.WARNING]
    assert len(said) == 1, said
    assert "2 of 4 captions" in said[0] and f"{full} tokens" in said[0], said[0]
    assert "clip.model.towers.max_length 8" in said[0], said[0]


def test_a_max_length_beyond_the_position_table_is_said_to_be_capped(caplog):
    """clip.model.towers.max_length=128 on a CLIP of 77 positions was lowered to 77 without a word (and the cut
    warning then called 77 the max_length): the build says the setting is capped, once, with both numbers."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert _towers(max_length=128).max_length == 77
    said = _warnings(caplog)
    assert len(said) == 1 and "clip.model.towers.max_length" in said[0] and "128" in said[0] and "77" in said[0], said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _towers(max_length=77)
    assert _warnings(caplog) == []
