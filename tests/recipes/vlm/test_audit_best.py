"""`vlm.keep_best` bookkeeping, on a marker save (no model): which validation is the best, which folders stay on
disk, what a fresh start forgets, what `adapter/` becomes, and which resumes are refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.recipes.vlm.best import check_keep_best_resume, read_best

from support.vlm import finetune_config, marker_best_adapter


def _folders(run_dir: Path):
    return sorted(p.name for p in run_dir.glob("adapter-best-*"))


def test_an_equal_val_loss_later_does_not_replace_themarker_best_adapter(tmp_path):
    """Strictly lower only (the HF Trainer's rule): a tie keeps the earlier adapter and saves nothing."""
    best, saved = marker_best_adapter(tmp_path)
    best.restore(None)
    best.see(2, {"val/loss": 1.25})
    assert best.see(4, {"val/loss": 1.25}) == {"best/val_loss": 1.25, "best/step": 2.0}
    assert saved == ["adapter-best-step-000002"]
    assert json.loads((tmp_path / "best.json").read_text())["step"] == 2
    assert best.see(6, {}) == {"best/val_loss": 1.25, "best/step": 2.0}  # a validation without val/loss


def test_a_new_best_removes_the_previous_best_folder_and_a_worse_one_saves_nothing(tmp_path):
    """Only the recorded best's folder stays: every replaced best's adapter used to pile up in the run folder."""
    best, saved = marker_best_adapter(tmp_path)
    best.restore(None)
    best.see(2, {"val/loss": 3.0})
    best.see(4, {"val/loss": 1.0})
    assert _folders(tmp_path) == ["adapter-best-step-000004"]
    best.see(6, {"val/loss": 2.0})
    assert saved == ["adapter-best-step-000002", "adapter-best-step-000004"]
    assert _folders(tmp_path) == ["adapter-best-step-000004"]
    record = json.loads((tmp_path / "best.json").read_text())
    assert record == {"step": 4, "val/loss": 1.0, "folder": "adapter-best-step-000004"}


def test_a_start_at_step_zero_forgets_an_earlier_record_and_its_folders(tmp_path):
    """A run starting over (no checkpoint) must not keep the best of the run it replaces: its record is deleted,
    every best folder removed, and the first validation of the new run becomes the best whatever its loss."""
    old, _ = marker_best_adapter(tmp_path)
    old.restore(None)
    old.see(8, {"val/loss": 0.1})
    assert (tmp_path / "best.json").is_file()
    fresh, saved = marker_best_adapter(tmp_path)
    fresh.restore(None)
    assert fresh.record is None and fresh.metrics() == {}
    assert not (tmp_path / "best.json").exists() and _folders(tmp_path) == []
    assert fresh.see(2, {"val/loss": 5.0}) == {"best/val_loss": 5.0, "best/step": 2.0}
    assert saved == ["adapter-best-step-000002"]


def test_a_resume_reads_the_record_back_and_removes_a_stray_folder(tmp_path):
    """A kill between saving a new best folder and recording it leaves a stray folder: the next start removes
    it and keeps the recorded one, which then still decides (a higher loss does not replace it)."""
    first, _ = marker_best_adapter(tmp_path)
    first.restore(None)
    first.see(4, {"val/loss": 1.0})
    stray = tmp_path / "adapter-best-step-000006"
    stray.mkdir()
    (stray / "adapter_model.safetensors").write_text("torn")
    resumed, saved = marker_best_adapter(tmp_path)
    resumed.restore(6)
    assert resumed.record == {"step": 4, "val/loss": 1.0, "folder": "adapter-best-step-000004"}
    assert _folders(tmp_path) == ["adapter-best-step-000004"]
    assert resumed.see(8, {"val/loss": 1.5})["best/step"] == 4.0 and saved == []


def test_a_record_naming_a_folder_without_an_adapter_is_forgotten(tmp_path):
    (tmp_path / "adapter-best-step-000004").mkdir()  # the folder exists, its adapter does not
    (tmp_path / "best.json").write_text(json.dumps({"step": 4, "val/loss": 1.0,
                                                    "folder": "adapter-best-step-000004"}))
    assert read_best(tmp_path) is None
    assert read_best(tmp_path / "nowhere") is None
    (tmp_path / "adapter-best-step-000004" / "adapter_model.safetensors").write_text("x")
    assert read_best(tmp_path)["step"] == 4


def test_publish_copies_the_best_folder_not_the_last_and_can_be_repeated(tmp_path):
    """`adapter/` holds the best validation's files (not the last step's), also when an `adapter/` exists already
    (a resumed run finishing again); with no best it is the last step's."""
    best, _ = marker_best_adapter(tmp_path)
    best.restore(None)
    best.see(2, {"val/loss": 1.0})
    last = tmp_path / "adapter-last"
    last.mkdir()
    (last / "adapter_model.safetensors").write_text("last")
    out = best.publish(last)
    assert out == tmp_path / "adapter" and (out / "adapter_model.safetensors").read_text() == "saved 0"
    (out / "extra.txt").write_text("from an earlier publish")
    best.publish(last)
    assert sorted(p.name for p in out.iterdir()) == ["adapter_model.safetensors"]
    assert (out / "adapter_model.safetensors").read_text() == "saved 0"
    assert not (tmp_path / "adapter.tmp").exists()
    none, _ = marker_best_adapter(tmp_path / "none")
    (tmp_path / "none").mkdir()
    assert (none.publish(last) / "adapter_model.safetensors").read_text() == "last"


def test_a_resume_may_end_exactly_at_the_recorded_best_step(tmp_path):
    """The best at step 6 and a resume whose schedule ends at step 6: allowed (only ending before it is refused)."""
    from mmlnb_dist.core.config import save_config
    from mmlnb_dist.core.errors import ConfigError

    stored = finetune_config(tmp_path, "r", "vlm.max_steps=8", "vlm.eval_every=2", "vlm.keep_best=true")
    run_dir = Path(stored.run.dir)
    save_config(stored, run_dir / "config.yaml")
    (run_dir / "adapter-best-step-000006").mkdir()
    (run_dir / "adapter-best-step-000006/adapter_model.safetensors").write_bytes(b"")
    (run_dir / "best.json").write_text(json.dumps({"step": 6, "val/loss": 1.0, "folder": "adapter-best-step-000006"}))
    resume = finetune_config(tmp_path, "r", "vlm.max_steps=6", "vlm.eval_every=2", "vlm.keep_best=true",
                             "run.resume=true")
    check_keep_best_resume(resume, 6)
    with pytest.raises(ConfigError, match=r"step 6"):
        check_keep_best_resume(resume, 5)
