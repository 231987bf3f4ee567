"""Figures of a CLIP run, and what the end of a run publishes besides its export (`publish_run`).

    per_label_f1_figure   per-label F1 of the top-k prediction, one bar per label and split (val, test)
    cooccurrence_figure   label co-occurrence in the training split: share of the samples holding label i (row)
                          that also hold label j (column); the diagonal is 1 for every label that occurs

Each figure function takes plain arrays and returns `(Figure, data)`: the figure is built without pyplot (no
backend, no display: Agg-only servers and Ray workers), and `data` holds the arrays drawn, so tests compare them
with a direct computation. The figures are saved as PNG in `<run dir>/figures/` and logged to MLflow.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:
    from ...data.shardset import ShardSet
    from .recipe import ClipRecipe

log = logging.getLogger(__name__)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot(1, 1, 1)


def per_label_f1_figure(per_label_f1: Mapping[str, Sequence[float]], classes: Sequence[str], top_k: int
                        ) -> Tuple[Any, Dict[str, np.ndarray]]:
    """Horizontal bars of each label's F1 (top-k prediction), one bar per split; data: {split: F1 [labels]}."""
    data = {split: np.asarray(values, dtype=np.float64) for split, values in per_label_f1.items()}
    for split, values in data.items():
        if len(values) != len(classes):
            raise ValueError(f"{split}: {len(values)} F1 values for {len(classes)} labels")
    n, bars = len(classes), max(len(data), 1)
    fig, ax = _figure(7, 0.28 * n * bars + 1.8)
    height = 0.8 / bars
    y = np.arange(n)
    for b, (split, values) in enumerate(data.items()):
        ax.barh(y + (b - (bars - 1) / 2) * height, values, height=height, label=split)
    ax.set(yticks=y, yticklabels=list(classes), xlim=(0, 1), xlabel=f"F1 (top-{top_k} prediction)",
           title="Per-label F1")
    ax.invert_yaxis()  # vocabulary order from the top
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig, data


def cooccurrence(multi_hot: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(counts [L, L]: samples holding both labels i and j, the diagonal each label's count; normalised [L, L]:
    counts[i, j] / counts[i, i], 0 for a label that never occurs)."""
    y = np.asarray(multi_hot, dtype=np.int64)
    counts = y.T @ y
    totals = np.diag(counts).astype(np.float64)
    normalised = np.divide(counts, totals[:, None], out=np.zeros(counts.shape), where=totals[:, None] > 0)
    return counts, normalised


def cooccurrence_figure(multi_hot: np.ndarray, classes: Sequence[str], split: str = "train"
                        ) -> Tuple[Any, Dict[str, np.ndarray]]:
    """Heatmap of `cooccurrence(multi_hot)["normalised"]`; data: {"counts", "normalised"}."""
    counts, normalised = cooccurrence(multi_hot)
    n = len(classes)
    fig, ax = _figure(0.45 * n + 3, 0.45 * n + 2.5)
    im = ax.imshow(normalised, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="P(column label | row label)")
    ax.set(xticks=range(n), yticks=range(n), title=f"Label co-occurrence ({split}, {len(multi_hot)} samples)")
    ax.set_xticklabels(list(classes), rotation=90)
    ax.set_yticklabels(list(classes))
    if n <= 20:  # the values stay readable
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if normalised[i, j] > 0.6 else "white")
    fig.tight_layout()
    return fig, {"counts": counts, "normalised": normalised}


def split_label_matrix(shards: "ShardSet", split: str) -> np.ndarray:
    """Multi-hot [samples, labels] of every sample of `split`, from the `labels` list of its json member (read
    straight from the shards; samples without a readable label list are skipped, as the loader skips them)."""
    from ...data.preprocess import MultiHotLabel, sample_meta
    from ...data.reader import iter_shard_samples

    codec = MultiHotLabel(shards.classes)
    rows = []
    for path, _ in shards.shards(split):
        for raw in iter_shard_samples(path):
            try:
                rows.append(codec(raw, sample_meta(raw)))
            except ValueError:
                continue
    return np.stack(rows) if rows else np.zeros((0, len(shards.classes)), dtype=np.float32)


def save_figures(logger, figures_dir: Path, figures: Mapping[str, Any]) -> Dict[str, str]:
    """Each figure as `<figures_dir>/<name>` and, when the logger keeps figures (MLflow), as an artifact under
    `figures/` (the MLflow logger saves the same PNG in the run folder itself). Returns {name: path}."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    logged = logger is not None and logger.wants_figures
    for name, fig in figures.items():
        if logged:
            logger.log_figure(fig, name)
        if not (logged and (figures_dir / name).is_file()):  # not the copy the MLflow logger just saved: a resume
            fig.savefig(figures_dir / name, dpi=110, bbox_inches="tight")  # with more epochs replaces its curve
        paths[name] = str(figures_dir / name)
    return paths


def publish_run(recipe: "ClipRecipe", result: Mapping[str, Any], export_dir: Path) -> Dict[str, Any]:
    """What the end of a run (rank 0, after the export) publishes: the per-label F1 chart of the evaluated splits
    and the training split's co-occurrence heatmap (PNG in `<run dir>/figures/` and in MLflow), then, with
    `tracking.register_name`, the registry version. Returns `figures` ({name: path}) and `registered`."""
    classes = list(recipe.classes)
    f1 = {split: result[f"{split}/per_label_f1"] for split in ("val", "test") if f"{split}/per_label_f1" in result}
    figures = {"per_label_f1.png": per_label_f1_figure(f1, classes, recipe.cfg.clip.top_k)[0],
               "label_cooccurrence_train.png": cooccurrence_figure(split_label_matrix(recipe.shards, "train"),
                                                                    classes)[0]}
    out: Dict[str, Any] = {"figures": save_figures(recipe.logger, recipe.run_dir / "figures", figures)}
    cfg = recipe.cfg
    if cfg.tracking.register_name:
        from ...core.tracking.registry import register_or_explain
        from .pyfunc_model import register_export

        out["registered"] = register_or_explain(recipe.logger.run_id, recipe.logger.online, cfg.tracking.register_name,
                                                recipe.run_dir, lambda run_id: register_export(cfg, run_id, export_dir))
    return out
