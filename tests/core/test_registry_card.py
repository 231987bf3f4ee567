"""The model card describes the registered model: the exported (best) checkpoint's metrics, not the last epoch's,
and a card longer than a version description holds is cut at a line, saying so."""
from __future__ import annotations

from types import SimpleNamespace

from mmlnb_dist.core.tracking.card import model_card, version_description
from mmlnb_dist.core.tracking.registry import ModelPackage


def _run(metrics):
    return SimpleNamespace(info=SimpleNamespace(run_id="r1", run_name="t"), inputs=None,
                           data=SimpleNamespace(metrics=metrics, tags={}, params={}))


def _package():
    return ModelPackage(python_model="model.py", artifacts={}, signature=None, input_example=None, title="m")


def _metrics_section(card: str):
    section = card.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("- ")]


def test_the_card_lists_the_exported_checkpoints_metrics_not_the_last_epochs():
    card = model_card(_run({"val/acc": 0.6, "best/val/acc": 0.9, "best/test/acc": 0.85, "train/loss": 0.1}),
                      _package(), "best/val/acc")
    lines = _metrics_section(card)
    assert "- best/val/acc: 0.9000" in lines and "- best/test/acc: 0.8500" in lines
    assert not any(line.startswith("- val/acc") for line in lines)  # the last epoch's, not the exported model's
    assert "exported" in card.split("## Metrics", 1)[1].split("\n", 2)[1]


def test_without_best_metrics_the_card_falls_back_to_the_last_values():
    lines = _metrics_section(model_card(_run({"val/acc": 0.6, "test/acc": 0.5}), _package(), "val/acc"))
    assert lines == ["- test/acc: 0.5000", "- val/acc: 0.6000"]


def test_a_long_card_is_cut_at_a_line_with_a_marker():
    card = "".join(f"- metric/{i:05d}: 0.1234\n" for i in range(1000))
    text = version_description(card, limit=5000)
    assert len(text) <= 5000 and "truncated" in text.splitlines()[-1]
    assert all(line.endswith("0.1234") for line in text.splitlines()[:-1])  # no line cut mid-key
    assert version_description("short\n", limit=5000) == "short\n"
