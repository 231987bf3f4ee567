"""Evaluation figures of the fusion recipe.

Each helper takes plain arrays and returns a `matplotlib.figure.Figure` built without pyplot (no backend to
choose, no display needed on servers and in Ray workers); `log_evaluation_figures` draws the whole set and hands
each figure to a metric logger (which saves it in the run folder and in MLflow). Rows of the confusion matrix
are true classes, columns predicted ones (the authors' code transposed them).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np


def _figure(width: float, height: float, cols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = [fig.add_subplot(1, cols, i + 1) for i in range(cols)]
    return fig, (axes[0] if cols == 1 else axes)


def confusion_matrix_figure(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str],
                            normalize: bool = False, title: str = "Confusion matrix"):
    """Counts (and row-normalised rates when `normalize`) with rows = true, columns = predicted."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    k = len(classes)
    cm = np.zeros((k, k), dtype=float)
    np.add.at(cm, (y_true, y_pred), 1)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig, ax = _figure(1.2 * k + 2.5, 1.2 * k + 2)
    im = ax.imshow(shown, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set(xticks=range(k), yticks=range(k), xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="true", title=title)
    for i in range(k):
        for j in range(k):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center",
                    color="white" if shown[i, j] > shown.max() / 2 else "black")
    fig.tight_layout()
    return fig


def roc_curves_figure(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                      title: str = "ROC (one-vs-rest)"):
    """One ROC curve per class (one-vs-rest) with its AUC; classes absent from `y_true` are skipped."""
    from sklearn.metrics import auc, roc_curve

    y_true, probs = np.asarray(y_true, int), np.asarray(probs, float)
    fig, ax = _figure(5, 4.5)
    for c, name in enumerate(classes):
        positives = y_true == c
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives, probs[:, c])
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def alpha_distribution_figure(alpha: Sequence[float], y_true: Sequence[int], y_pred: Sequence[int],
                              classes: Sequence[str], title: str = "PRMF text weight alpha"):
    """alpha (text weight) per true class, and for correct vs wrong predictions (two panels)."""
    alpha = np.asarray(alpha, float).reshape(-1)
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    bins = np.linspace(0, 1, 21)
    fig, (a1, a2) = _figure(10, 4, cols=2)
    for c, name in enumerate(classes):
        sel = alpha[y_true == c]
        if sel.size:
            a1.hist(sel, bins=bins, alpha=0.5, label=f"{name} (n={sel.size}, mean {sel.mean():.2f})")
    a1.set(xlabel="alpha", ylabel="samples", title="per true class")
    a1.legend(fontsize=8)
    correct = y_true == y_pred
    for sel, name in ((alpha[correct], "correct"), (alpha[~correct], "wrong")):
        if sel.size:
            a2.hist(sel, bins=bins, alpha=0.5, label=f"{name} (n={sel.size}, mean {sel.mean():.2f})")
    a2.set(xlabel="alpha", title="correct vs wrong predictions")
    a2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def curriculum_figure(epochs: Sequence[int], lambdas: Sequence[float],
                      phases: Optional[Sequence[Dict[str, Any]]] = None,
                      title: str = "Curriculum used: lambda(e) and freezing phases"):
    """The lambda actually used per epoch, with the freezing phases shaded (dicts as in `PhaseConfig`). Epoch e
    spans [e, e + 1): its lambda is drawn over that span (the line ends where the last epoch, and the shading, ends)
    with a marker at its start."""
    fig, ax = _figure(7, 3.5)
    epochs, lambdas = list(epochs), list(lambdas)
    last = max(epochs) + 1 if epochs else 1
    ends = [last] if epochs else []  # the end of the last epoch, holding its lambda (no marker: no epoch there)
    ax.step(epochs + ends, lambdas + lambdas[-1:], where="post", marker="o", ms=3,
            markevery=list(range(len(epochs))), label="lambda (fused-loss weight)")
    if phases:
        starts = [int(p["start_epoch"]) for p in phases] + [last]
        colors = ["#e8f0fe", "#fef7e0", "#e6f4ea", "#fce8e6"]
        for i, p in enumerate(phases):
            if starts[i] >= last:  # a phase the run never reached (stopped, or fewer epochs than the table)
                break
            which = [n for n, key in (("image", "train_image_encoder"), ("text", "train_text_encoder"))
                     if p.get(key)]
            ax.axvspan(starts[i], min(starts[i + 1], last), color=colors[i % len(colors)], alpha=0.8, lw=0)
            ax.text(starts[i] + 0.1, 0.02, "trains: " + ("+".join(which) or "heads only"), fontsize=8)
    ax.set(xlabel="epoch", ylabel="lambda", ylim=(0, 1.05), title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def log_evaluation_figures(logger, y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                           alpha: Optional[Sequence[float]] = None, prefix: str = "val",
                           curriculum: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Draw and log the evaluation set; the fusion recipe calls this once after its final validation.

    `probs` is [N, C] class probabilities; `alpha` the PRMF text weight per sample (None for non-PRMF
    fusion); `curriculum` is {"epochs": [...], "lambdas": [...], "phases": [PhaseConfig dicts]}.
    Returns {name: figure} after logging (the dict is for tests and notebooks).
    """
    probs = np.asarray(probs, float)
    y_pred = probs.argmax(axis=1)
    makers: Dict[str, Callable[[], Any]] = {
        f"{prefix}/confusion_matrix.png": lambda: confusion_matrix_figure(y_true, y_pred, classes),
        f"{prefix}/confusion_matrix_normalized.png": lambda: confusion_matrix_figure(
            y_true, y_pred, classes, normalize=True, title="Confusion matrix (row-normalised)"),
        f"{prefix}/roc_curves.png": lambda: roc_curves_figure(y_true, probs, classes),
    }
    if alpha is not None:
        makers[f"{prefix}/alpha_distribution.png"] = lambda: alpha_distribution_figure(alpha, y_true, y_pred,
                                                                                        classes)
    if curriculum:
        makers["curriculum_schedule.png"] = lambda: curriculum_figure(
            curriculum["epochs"], curriculum["lambdas"], curriculum.get("phases"))
    figures = {}
    for name, make in makers.items():
        fig = make()
        logger.log_figure(fig, name)
        figures[name] = fig
    return figures
