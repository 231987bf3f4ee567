"""`tune.seed` seeds the random (and grid) searcher as it seeds Optuna: two searches with tune.seed=0 sampled
different values, because the driver left Tune's default generator unseeded. The values a search's searcher would
propose are drawn here from what the driver hands the Tuner (Ray's Tuner replaced; no Ray instance needed)."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config


def _proposals(tmp_path, monkeypatch, name, seed, searcher="random", samples=4):
    from ray import tune
    from ray.tune.experiment import Experiment
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    from mmlnb_dist.tuning import driver

    seen = {}

    class Tuner:
        def __init__(self, trainable, param_space, tune_config, run_config):
            seen.update(param_space=param_space, tune_config=tune_config)

        def fit(self):
            raise KeyboardInterrupt  # nothing to run: what the search would sample is all this test wants

    monkeypatch.setattr(driver, "_init_ray", lambda cfg: False)
    monkeypatch.setattr(tune, "Tuner", Tuner)
    monkeypatch.setattr(tune, "with_parameters", lambda fn, **kw: fn)
    monkeypatch.setattr(tune, "with_resources", lambda fn, res: fn)
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {loguniform: [1.0e-4, 1.0e-2]}\n"
                                         "  train.weight_decay: {uniform: [0.0, 0.1]}\n")
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[stdout]",
                                   "tune.recipe=mmlnb_dist.tuning.smoke:run", "tune.num_cpus=2", f"tune.name={name}",
                                   f"tune.seed={seed}", f"tune.searcher={searcher}", f"tune.num_samples={samples}"])
    with pytest.raises(KeyboardInterrupt):
        driver.run_search(cfg, tmp_path / "space.yaml")
    tc = seen["tune_config"]
    alg = tc.search_alg
    if alg is None or isinstance(alg, ConcurrencyLimiter):
        assert searcher != "random", "the random searcher was left to Tune's unseeded default"
        return None
    assert isinstance(alg, BasicVariantGenerator)

    def trainable(config):
        pass

    alg.add_configurations([Experiment(name=name, run=trainable, config=seen["param_space"],
                                       num_samples=tc.num_samples, storage_path=str(tmp_path / "ray"))])
    out = []
    while (trial := alg.next_trial()) is not None:
        out.append((trial.config["train.lr"], trial.config["train.weight_decay"]))
        alg.on_trial_complete(trial.trial_id)  # (it proposes tune.max_concurrent trials at a time)
    return out


def test_the_same_seed_samples_the_same_values(tmp_path, monkeypatch):
    first = _proposals(tmp_path, monkeypatch, "first", seed=0)
    again = _proposals(tmp_path, monkeypatch, "again", seed=0)
    other = _proposals(tmp_path, monkeypatch, "other", seed=1)
    assert len(first) == 4 and len(set(first)) == 4
    assert first == again
    assert other != first
