"""`vlm.keep_best` (the HF Trainer's load_best_model_at_end with metric_for_best_model=eval_loss): the fine-tune's
`adapter/` is the adapter of the validation with the lowest val/loss, the last step's goes to `adapter-last/`.
Before it, `adapter/` was always the last step's, however much lower an earlier val/loss had been.

The choice logic runs on scripted val/loss values (`validate` replaced by a table of step -> loss: deterministic,
and the same when a resume replays a step); the weights are the tiny Qwen2.5-VL's, one process, ZeRO-0, a
constant learning rate, so a run stopped at the best step by vlm.max_steps holds the same adapter bit for bit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from support.vlm import Interrupted, finetune_config, make_pairs, marker_best_adapter

SCRIPT = {2: 3.0, 4: 1.0, 6: 2.0, 8: 1.5}
"""val/loss at each validation (eval_every=2, 8 steps): the best is step 4, after the step-3 checkpoint."""


def _cfg(tmp: Path, name: str, *extra: str):
    return finetune_config(tmp, name, "vlm.max_steps=8", "vlm.checkpoint_every=3", "vlm.eval_every=2",
                           "vlm.val_max_samples=4", "vlm.lr_schedule.name=constant", "vlm.lr_schedule.warmup_ratio=0",
                           "vlm.keep_best=true", *extra)


def _scripted(self):
    return {"val/loss": SCRIPT[self.step]}


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def _same(a, b) -> bool:
    return a.keys() == b.keys() and bool(a) and all(torch.equal(a[k], b[k]) for k in a)


def _run(cfg, report=None):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FinetuneVLMRecipe, "validate", _scripted)
        return run(FinetuneVLMRecipe, cfg, report=report)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """keep_best over 8 steps; the same stopped at step 4 and run to step 8 without keep_best."""
    tmp = tmp_path_factory.mktemp("vlm_keep_best")
    make_pairs(tmp / "pairs", n=24)
    return {"tmp": tmp, "best": _run(_cfg(tmp, "best")),
            "at4": _run(_cfg(tmp, "at4", "vlm.max_steps=4", "vlm.keep_best=false")),
            "last": _run(_cfg(tmp, "last", "vlm.keep_best=false"))}


def test_the_adapter_is_the_best_validations_and_the_last_is_kept_beside_it(runs):
    best, run_dir = runs["best"], Path(runs["best"]["run_dir"])
    assert best["step"] == 8 and best["val/loss"] == 1.5
    assert best["best/step"] == 4 and best["best/val_loss"] == 1.0
    assert Path(best["adapter_dir"]) == run_dir / "adapter"
    assert _same(_weights(best["adapter_dir"]), _weights(runs["at4"]["adapter_dir"]))
    assert Path(best["adapter_last_dir"]) == run_dir / "adapter-last"
    assert _same(_weights(best["adapter_last_dir"]), _weights(runs["last"]["adapter_dir"]))
    assert not _same(_weights(best["adapter_dir"]), _weights(best["adapter_last_dir"]))
    stored = json.loads((run_dir / "result.json").read_text())
    assert (stored["best/step"], stored["best/val_loss"], stored["adapter_dir"]) == (4, 1.0, best["adapter_dir"])
    assert json.loads((run_dir / "best.json").read_text())["step"] == 4
    assert [p.name for p in run_dir.glob("adapter-best-*")] == ["adapter-best-step-000004"]
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    tracked = [(m.get("step"), m.get("best/step"), m.get("best/val_loss")) for m in logged if "best/step" in m]
    assert tracked == [(2, 2.0, 3.0), (4, 4.0, 1.0), (6, 4.0, 1.0), (8, 4.0, 1.0)], tracked


def test_without_keep_best_the_adapter_is_the_last_steps(runs):
    last = runs["last"]
    assert "best/step" not in last and "adapter_last_dir" not in last
    assert not list(Path(last["run_dir"]).glob("adapter-*")) and not (Path(last["run_dir"]) / "best.json").exists()


@pytest.mark.parametrize("kill_at", [4, 8])
def test_a_killed_run_resumes_to_the_same_best_adapter_bit_for_bit(runs, kill_at):
    """Killed at step 4 (just after the best was saved, last checkpoint at step 3: the resume replays the step
    that recorded it) or at the final validation (checkpoint at 6, best at 4: read back, not replaced by 8's)."""
    tmp = runs["tmp"]
    name = f"cut{kill_at}"

    def kill(step, metrics):
        if step == kill_at:
            raise Interrupted(step)

    with pytest.raises(Interrupted):
        _run(_cfg(tmp, name), report=kill)
    cut = tmp / "runs" / name
    assert json.loads((cut / "best.json").read_text())["step"] == 4 and not (cut / "adapter").exists()
    resumed = _run(_cfg(tmp, name, "run.resume=true"))
    whole = runs["best"]
    assert (resumed["best/step"], resumed["best/val_loss"]) == (whole["best/step"], whole["best/val_loss"])
    assert _same(_weights(resumed["adapter_dir"]), _weights(whole["adapter_dir"]))
    assert _same(_weights(resumed["adapter_last_dir"]), _weights(whole["adapter_last_dir"]))


def test_keep_best_without_validations_is_refused_naming_both_keys(tmp_path):
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    make_pairs(tmp_path / "pairs", n=12)
    with pytest.raises(ConfigError, match=r"vlm\.keep_best.*vlm\.eval_every"):
        FinetuneVLMRecipe.check_config(_cfg(tmp_path, "x", "vlm.eval_every=null"), 1)
    with pytest.raises(ConfigError, match=r"vlm\.keep_best.*vlm\.eval_every"):
        run(FinetuneVLMRecipe, _cfg(tmp_path, "x", "vlm.eval_every=null"))
    make_pairs(tmp_path / "noval", n=12, val_fraction=0.0)
    with pytest.raises(ConfigError, match=r"vlm\.eval_every.*vlm\.keep_best") as err:
        run(FinetuneVLMRecipe, _cfg(tmp_path, "x", f"vlm.pairs={tmp_path / 'noval'}"))
    assert "val pairs" in str(err.value)
    assert not (tmp_path / "runs").exists()


def test_a_resume_may_not_change_what_picks_the_best(tmp_path):
    from mmlnb_dist.core.config import save_config
    from mmlnb_dist.core.errors import ConfigError, UserError
    from mmlnb_dist.core.recipe import check_resume_config
    from mmlnb_dist.recipes.vlm.best import check_keep_best_resume
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    stored = _cfg(tmp_path, "r")
    run_dir = Path(stored.run.dir)
    save_config(stored, run_dir / "config.yaml")
    with pytest.raises(UserError, match=r"vlm\.keep_best"):
        check_resume_config(_cfg(tmp_path, "r", "run.resume=true", "vlm.keep_best=false"), run_dir,
                            FinetuneVLMRecipe, record=False)
    with pytest.raises(ConfigError, match=r"vlm\.eval_every"):
        check_keep_best_resume(_cfg(tmp_path, "r", "run.resume=true", "vlm.eval_every=4"), 8)
    check_keep_best_resume(_cfg(tmp_path, "r", "run.resume=true", "vlm.max_steps=12"), 12)
    # a best recorded at step 6 and a resume that would end at step 5
    (run_dir / "adapter-best-step-000006").mkdir()
    (run_dir / "adapter-best-step-000006/adapter_model.safetensors").write_bytes(b"")
    (run_dir / "best.json").write_text(json.dumps({"step": 6, "val/loss": 1.0, "folder": "adapter-best-step-000006"}))
    with pytest.raises(ConfigError, match=r"vlm\.max_steps.*step 6"):
        check_keep_best_resume(_cfg(tmp_path, "r", "run.resume=true", "vlm.max_steps=5"), 5)


def test_keep_best_is_fingerprinted_and_then_so_is_eval_every():
    from mmlnb_dist.config import load_config
    from mmlnb_dist.pipeline import steps
    from mmlnb_dist.pipeline.stages import StageResult

    shards = StageResult("shards", Path("/data/shards"), "fp-shards", True, 0.0, {}, status="skipped")

    def fp(*overrides):
        return steps.plan_finetune_vlm(load_config("rtx4090", list(overrides)), shards).fingerprint

    assert fp("vlm.eval_every=100", "vlm.keep_best=true") != fp("vlm.eval_every=100")
    assert fp("vlm.eval_every=100", "vlm.keep_best=true") != fp("vlm.eval_every=50", "vlm.keep_best=true")
    assert fp("vlm.eval_every=100") == fp("vlm.eval_every=50") == fp("vlm.keep_best=false")


def test_a_non_finite_val_loss_is_never_the_best(tmp_path):
    """NaN compared with anything is False: a NaN first validation became a best no later one could replace."""
    best, saved = marker_best_adapter(tmp_path)
    best.restore(None)
    assert best.see(2, {"val/loss": float("nan")}) == {} and saved == []
    assert best.see(4, {"val/loss": 2.0}) == {"best/val_loss": 2.0, "best/step": 4.0}
    assert best.see(6, {"val/loss": float("inf")})["best/step"] == 4.0 and saved == ["adapter-best-step-000004"]


def test_a_resume_replaying_steps_before_a_recorded_best_keeps_it_and_never_rewrites_its_folder(tmp_path):
    """A best at step 8, the checkpoint at step 4: the replayed validations at 6 and 8 (lower losses, as a resume
    that changed the schedule's length could give) neither replace the best nor rewrite its folder (a kill during
    that rewrite left a torn adapter that best.json named), and log no best before step 8."""
    first, _ = marker_best_adapter(tmp_path)
    first.restore(None)
    first.see(8, {"val/loss": 1.0})
    resumed, saved = marker_best_adapter(tmp_path)
    resumed.restore(4)
    assert resumed.see(6, {"val/loss": 0.5}) == {}
    assert resumed.see(8, {"val/loss": 0.9}) == {"best/val_loss": 1.0, "best/step": 8.0}
    assert saved == [] and (tmp_path / "adapter-best-step-000008/adapter_model.safetensors").read_text() == "saved 0"
    assert resumed.see(10, {"val/loss": 0.8})["best/step"] == 10.0  # after the recorded step: compared again


def test_an_unreadable_best_record_is_a_clear_error(tmp_path):
    best, _ = marker_best_adapter(tmp_path)
    (tmp_path / "best.json").write_text("{not json")
    with pytest.raises(RuntimeError, match=r"best\.json cannot be read .*delete it"):
        best.restore(4)


def test_with_no_finite_validation_the_adapter_is_the_last_steps_and_the_run_finishes(runs, caplog):
    """Every val/loss non-finite: there is no best, so `adapter/` is the last step's, with a warning (it raised on
    rank 0 alone after the final checkpoint, which left the other ranks failing elsewhere and every resume failing
    the same way)."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FinetuneVLMRecipe, "validate", lambda self: {"val/loss": float("nan")})
        result = run(FinetuneVLMRecipe, _cfg(runs["tmp"], "nan"))
    run_dir = Path(result["run_dir"])
    assert "best/step" not in result and not (run_dir / "best.json").exists()
    assert _same(_weights(result["adapter_dir"]), _weights(result["adapter_last_dir"]))
    assert _same(_weights(result["adapter_dir"]), _weights(runs["last"]["adapter_dir"]))
    assert any("no validation" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
