"""A setting that changes how a metric is computed (clip's `clip.top_k`), changed on resume, is compared at the
value the run was scored with. MLflow keeps a param's first value, and the new one goes to a
`param_changed.<key>` tag: the registry compared the first values, so a run resumed with top_k=3 (its final
scores top-3) was compared with a top-5 holder as if both were top-5, and could take the alias on an easier
metric."""
from __future__ import annotations

import json
from types import SimpleNamespace

from mmlnb_dist.core.tracking.lineage import not_comparable

METRIC = "best/val/f1_micro"


def _run(run_id, params, tags=()):
    tag = SimpleNamespace(key="mlflow.data.context", value="val")
    dataset = SimpleNamespace(name="set:val", digest="d1", profile=json.dumps({"manifest_sha256": "m1"}))
    return SimpleNamespace(info=SimpleNamespace(run_id=run_id),
                           data=SimpleNamespace(params=dict(params), tags=dict(tags)),
                           inputs=SimpleNamespace(dataset_inputs=[SimpleNamespace(tags=[tag], dataset=dataset)]))


def test_a_setting_changed_on_resume_is_compared_at_its_new_value():
    holder = _run("h", {"clip.top_k": "5"})
    resumed = _run("r", {"clip.top_k": "5"}, {"param_changed.clip.top_k": "3"})
    why = not_comparable(holder, "1", resumed, METRIC, ["clip.top_k"])
    assert why and "clip.top_k=5" in why and "clip.top_k=3" in why
    back = _run("b", {"clip.top_k": "3"}, {"param_changed.clip.top_k": "5"})  # resumed back to the holder's
    assert not_comparable(holder, "1", back, METRIC, ["clip.top_k"]) is None
    assert not_comparable(resumed, "2", holder, METRIC, ["clip.top_k"])  # the holder itself resumed
