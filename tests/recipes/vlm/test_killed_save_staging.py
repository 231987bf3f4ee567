"""A save killed mid-way (the LoRA adapter of `finetune-vlm`, or an `export-vlm`) left its hidden staging folder
(`.<folder>.saving`, `.<folder>.replaced`, `.<out>.export-vlm`) next to the output until the next save in the same
place, perhaps hours later: a stray hidden folder of gigabytes on a real model. The start of a fine-tuning run now
removes what a killed save of its adapters left, saying so, and an export says what a killed export left."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mmlnb_dist.core.distributed import DistEnv


def _adapter(folder: Path, value: str) -> None:
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_text(f"weights {value}")
    (folder / "adapter_config.json").write_text(f'{{"v": "{value}"}}')


def _contents(folder: Path):
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_a_save_killed_while_writing_is_removed_at_the_next_start(tmp_path, caplog):
    from mmlnb_dist.recipes.vlm.adapter import clear_unfinished_saves

    run = tmp_path / "run"
    _adapter(run / "adapter", "1")
    (run / ".adapter.saving").mkdir()  # killed inside save_pretrained: half the weights written
    (run / ".adapter.saving" / "adapter_model.safetensors").write_text("wei")
    (run / ".adapter-best-step-000004.saving").mkdir()
    with caplog.at_level(logging.INFO, logger="mmlnb_dist.recipes.vlm.adapter"):
        clear_unfinished_saves(run)
    assert sorted(p.name for p in run.iterdir()) == ["adapter"]
    assert _contents(run / "adapter") == {"adapter_config.json": '{"v": "1"}', "adapter_model.safetensors": "weights 1"}
    removed = [r.getMessage() for r in caplog.records if "removed" in r.getMessage()]
    assert len(removed) == 2 and any(str(run / ".adapter.saving") in m for m in removed), removed


def test_a_save_killed_between_its_two_moves_leaves_the_earlier_adapter_in_place(tmp_path, caplog):
    from mmlnb_dist.recipes.vlm.adapter import clear_unfinished_saves

    run = tmp_path / "run"
    _adapter(run / ".adapter.replaced", "1")  # the earlier adapter, set aside
    _adapter(run / ".adapter.saving", "2")    # the new one, not yet moved into place
    with caplog.at_level(logging.INFO, logger="mmlnb_dist.recipes.vlm.adapter"):
        clear_unfinished_saves(run)
    assert sorted(p.name for p in run.iterdir()) == ["adapter"]
    assert _contents(run / "adapter") == {"adapter_config.json": '{"v": "1"}', "adapter_model.safetensors": "weights 1"}
    assert any("restored" in r.getMessage() for r in caplog.records)


def test_the_fine_tuning_start_clears_them_before_reading_anything(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    run = tmp_path / "runs" / "ft"
    (run / ".adapter.saving").mkdir(parents=True)
    cfg = load_config(None, [f"run.output_dir={tmp_path / 'runs'}", "run.name=ft", "vlm.model=tiny",
                             f"vlm.pairs={tmp_path / 'no-pairs'}"])
    recipe = FinetuneVLMRecipe(cfg, DistEnv())
    with pytest.raises(Exception):
        recipe.setup()  # (no pairs: stops before any model loads)
    assert not (run / ".adapter.saving").exists()


def test_an_export_says_what_a_killed_export_left(tmp_path, monkeypatch, caplog):
    from mmlnb_dist.recipes.vlm import merge as M

    out = tmp_path / "merged"
    left = tmp_path / ".merged.export-vlm" / "model"
    left.mkdir(parents=True)
    (left / "model.safetensors").write_text("half")

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before loading")

    monkeypatch.setattr(M, "check_vlm_loadable", lambda *a: None)
    monkeypatch.setattr(M, "load_vlm", stop)
    with caplog.at_level(logging.INFO, logger="mmlnb_dist.recipes.vlm.merge"), pytest.raises(RuntimeError):
        M.merge_and_export("base", tmp_path / "adapter", out, min_pixels=1, max_pixels=2)
    assert not (tmp_path / ".merged.export-vlm").exists() and not out.exists()
    assert any("removed" in r.getMessage() and ".merged.export-vlm" in r.getMessage() for r in caplog.records)
