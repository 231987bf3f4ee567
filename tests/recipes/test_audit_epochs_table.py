"""Mutation audit of the epoch-loop parts the recipes share (`recipes.epochs`) and of the recipe table
(`recipes/__init__.py`): when an epoch is checkpointed and a stop honoured, what a mid-epoch resume on another layout
starts its running sums from and records, and the table's refusals of names it does not have. Stand-in recipes and
ranks; nothing is trained."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from mmlnb_dist.config import load_config
from mmlnb_dist.core.distributed import BatchPlan, DistEnv
from mmlnb_dist.core.errors import ConfigError


class _Recipe:
    """What `end_epoch` uses of a recipe: higher is better, every `every` epochs a checkpoint."""

    def __init__(self, every, best_value=None):
        self.cfg = load_config(None, [f"train.checkpoint_every={every}"])
        self.env = DistEnv()
        self.best = None if best_value is None else {"value": best_value}
        self.saved, self.asked = [], []
        self.stop = SimpleNamespace(stop_if_asked=lambda env, save, where: self.asked.append((save, where)))

    def is_better(self, value):
        return self.best is None or value > self.best["value"]

    def checkpoint_tag(self, epoch):
        return f"epoch-{epoch:04d}"

    def save_checkpoint(self, epoch):
        self.saved.append(epoch)
        return self.checkpoint_tag(epoch)


def test_an_epoch_is_checkpointed_when_best_due_or_last_and_a_stop_is_asked_before_the_last():
    from mmlnb_dist.recipes.epochs import end_epoch

    recipe = _Recipe(every=3, best_value=0.9)
    for epoch, value in enumerate([0.5, 0.95, 0.6, 0.7, 0.8]):
        end_epoch(recipe, epoch, 4, value)
    assert recipe.saved == [1, 2, 4]  # 1 the best, 2 due ((2 + 1) % 3), 4 the last
    assert recipe.best == {"tag": "epoch-0001", "epoch": 1, "metric": recipe.cfg.train.best_metric, "value": 0.95}
    assert [where for _, where in recipe.asked] == [f"after epoch {e}" for e in range(4)]  # not after the last
    # an epoch saved already is not saved again on a stop; one that was not is saved by the stop
    assert [save is None for save, _ in recipe.asked] == [False, True, True, False]
    recipe.asked[0][0]()
    assert recipe.saved[-1] == 0


def test_an_epoch_without_evaluation_never_becomes_the_best():
    from mmlnb_dist.recipes.epochs import end_epoch

    recipe = _Recipe(every=10)
    end_epoch(recipe, 0, 5, None)
    assert recipe.best is None and recipe.saved == []


def _position(world_size, consumed, epoch_positions=10, workers=1, micro_batch=2):
    from mmlnb_dist.data.position import DataPosition

    return DataPosition(epoch=3, step_in_epoch=2, world_size=world_size, num_workers=workers,
                        micro_batch=micro_batch, accumulation=2, epoch_positions=epoch_positions,
                        consumed=consumed)


class _Logger:
    def __init__(self):
        self.tags, self.params = {}, {}

    def set_tags(self, tags):
        self.tags.update(tags)

    def log_params(self, params):
        self.params.update(params)


def test_a_resume_on_another_layout_says_how_many_samples_are_dealt_and_dropped(caplog):
    from mmlnb_dist.recipes.epochs import mid_epoch_resume

    pos = _position(2, {"0/0": [0, 2], "1/0": [1, 3]}, epoch_positions=11)  # 7 left, saved on 2 ranks
    client = {"data_position": pos.to_state(), "rng": ["r0", "r1"], "epoch_sums": [[1.0, 2.0], [3.0, 4.0]],
              "tag": "step-000002"}
    plan = BatchPlan(global_batch=8, micro_batch=2, accumulation=1, world_size=3)
    logger = _Logger()
    with caplog.at_level(logging.INFO):
        resume = mid_epoch_resume(client, DistEnv(rank=0, world_size=3), plan, 1, logger)
    assert resume.same_layout is False and resume.rng == ["r0", "r1"]
    assert logger.tags == {"resume/world_size_change": "2->3", "resume/accumulation_change": "2->1"}
    assert logger.params["resume.step-000002.samples_left"] == 7
    assert logger.params["resume.step-000002.samples_dropped"] == 1  # 7 over 3 ranks: 2 each, 1 left over
    assert logger.params["resume.step-000002.epoch"] == 3
    assert "resuming on 3 processes, saved with 2" in caplog.text

    same = mid_epoch_resume(client, DistEnv(rank=1, world_size=2), plan, 1, _Logger())
    assert same.same_layout is True
    assert mid_epoch_resume({"data_position": {"granularity": "epoch"}}, DistEnv(), plan, 1, _Logger()) is None
    assert mid_epoch_resume({}, DistEnv(), plan, 1, _Logger()) is None


def test_the_running_sums_continue_per_rank_or_as_one_total_on_rank_0():
    from mmlnb_dist.recipes.epochs import MidEpochResume

    sums = [[1.0, 2.0], [3.0, 4.0]]
    same = MidEpochResume(_position(2, {}), [], sums, same_layout=True)
    assert same.epoch_sums(DistEnv(rank=1, world_size=2), 2).tolist() == [3.0, 4.0]
    other = MidEpochResume(_position(2, {}), [], sums, same_layout=False)
    assert other.epoch_sums(DistEnv(rank=0, world_size=3), 2).tolist() == [4.0, 6.0]
    assert other.epoch_sums(DistEnv(rank=2, world_size=3), 2).tolist() == [0.0, 0.0]  # the all-reduce adds rank 0's
    assert other.epoch_sums(DistEnv(), 2).dtype == torch.float64
    assert MidEpochResume(_position(2, {}), [], [], True).epoch_sums(DistEnv(), 3).tolist() == [0.0] * 3


def test_the_rng_is_restored_only_on_the_same_layout(monkeypatch):
    from mmlnb_dist.recipes import epochs

    seen = []
    monkeypatch.setattr(epochs, "set_rng_state", lambda state: seen.append(("restored", state)))
    monkeypatch.setattr(epochs, "seed_everything", lambda seed: seen.append(("seeded", seed)))
    epochs.restore_rng(epochs.MidEpochResume(_position(2, {}), ["r0", "r1"], [], True), DistEnv(rank=1, world_size=2),
                       5, 3)
    epochs.restore_rng(epochs.MidEpochResume(_position(2, {}), ["r0"], [], True), DistEnv(rank=1, world_size=2), 5, 3)
    epochs.restore_rng(epochs.MidEpochResume(_position(2, {}), ["r0", "r1"], [], False), DistEnv(rank=0, world_size=1),
                       5, 3)
    assert seen[0] == ("restored", "r1")
    assert seen[1][0] == "seeded" and seen[2][0] == "seeded" and seen[1][1] != seen[2][1]  # per rank


def test_the_recipe_table_refuses_names_it_does_not_have():
    from mmlnb_dist.recipes import load_class, recipe_class, spec_for

    with pytest.raises(ConfigError, match=r"--recipe: unknown recipe 'fuson'; the recipe table has clip, fusion, vlm"):
        spec_for("fuson", "--recipe")
    assert spec_for("clip").section == "clip"
    with pytest.raises(ConfigError, match=r"tune.recipe: 'nocolon' is neither a recipe of the table .* nor "):
        load_class("nocolon")
    with pytest.raises(ConfigError, match=r"train.recipe: cannot import 'mmlnb_dist.tuning.smoke:absent'"):
        recipe_class("mmlnb_dist.tuning.smoke:absent")
    with pytest.raises(ConfigError, match=r"cannot import 'no_such_module_x:run'"):
        load_class("no_such_module_x:run")
    assert recipe_class("mmlnb_dist.tuning.smoke:run").__name__ == "run"


def test_overrides_of_sections_a_recipe_never_reads_are_refused_by_name():
    from mmlnb_dist.recipes import recipes_of, refuse_unread_overrides, unread_keys

    assert unread_keys(["fusion.lr", "clip.x", "vlm.y", "train.lr"], "clip") == ["fusion.lr", "vlm.y"]
    assert unread_keys(["fusion.lr", "vlm.y"], "fusion", "vlm") == []
    assert unread_keys(["fusion.lr"], "pkg.mod:Recipe") == [] and unread_keys(["fusion.lr"]) == []
    with pytest.raises(ConfigError, match=r"train.recipe=clip never reads fusion.model.dropout: .*clip\.\*"):
        refuse_unread_overrides(["fusion.model.dropout = 0.1", "train.lr=1"], "clip")
    refuse_unread_overrides(["clip.head.hidden=8"], "clip")
    assert recipes_of(load_config(None, ["train.recipe=fusion", "vlm.finetune=true"])) == ["fusion", "vlm"]
    assert recipes_of(load_config(None, ["train.recipe=fusion", "vlm.finetune=false"])) == ["fusion"]
