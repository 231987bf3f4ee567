"""A multi-label (CLIP recipe) pipeline whose test split leaves a metric undefined: macro AUROC is NaN when no label
of the test split has both positives and negatives (a small test split; train checks best_metric on val only). The
evaluate stage writes evaluation.json as strict JSON (NaN -> null) and the report read it back: its per-split
metric table formatted None with `:.4f` and the pipeline ended in a TypeError after training and registering. The
table now shows n/a there, and a metric undefined on every split keeps its row."""
from __future__ import annotations

import json

from mmlnb_dist.config import load_config
from mmlnb_dist.core.files import strict_json
from mmlnb_dist.pipeline.finish import recipe_metrics
from mmlnb_dist.pipeline.report import final_report

URI = "sqlite:///m.db"


def _evaluation(train_metrics):
    """What the evaluate stage writes for a recipe without an evaluator, as the report reads it back."""
    return json.loads(json.dumps(strict_json(recipe_metrics(train_metrics)), allow_nan=False))


def test_a_metric_undefined_on_the_test_split_reads_n_a(tmp_path):
    cfg = load_config("clip-demo", [f"run.output_dir={tmp_path}"])
    metrics = {"test/micro_f1": 0.61, "val/micro_f1": 0.72, "test/macro_auroc": float("nan"),
               "val/macro_auroc": 0.81, "test/micro_auroc": float("nan"), "val/micro_auroc": float("nan"),
               "test/num_samples": 4, "val/num_samples": 8}
    report = final_report(cfg, [], _evaluation(metrics), None, URI, None, None)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in report.splitlines() if line.startswith("| ")}
    assert rows["metric"] == ["test (n=4)", "val (n=8)"]
    assert rows["micro_f1"] == ["0.6100", "0.7200"]
    assert rows["macro_auroc"] == ["n/a", "0.8100"]
    assert rows["micro_auroc"] == ["n/a", "n/a"]  # undefined on both splits: still a row, not dropped
