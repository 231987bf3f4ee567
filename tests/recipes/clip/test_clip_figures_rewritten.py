"""A CLIP run's figures are the run's latest: `save_figures` skipped a file that already existed, so without MLflow a
resume with more `train.epochs` (allowed) kept the old run's `lr_schedule.png` (and per-label F1 chart)."""
from __future__ import annotations

from matplotlib.figure import Figure

from mmlnb_dist.recipes.clip.plots import save_figures


def _line(values):
    fig = Figure(figsize=(2, 2))
    fig.add_subplot(1, 1, 1).plot(values)
    return fig


class _FigureLogger:
    """Keeps figures as the MLflow logger does: it saves each one under `<run dir>/figures/` itself."""
    wants_figures = True

    def __init__(self, figures_dir):
        self.figures_dir, self.logged = figures_dir, []

    def log_figure(self, fig, name):
        self.logged.append(name)
        fig.savefig(self.figures_dir / name)


def test_a_second_save_replaces_the_first_without_a_figure_logger(tmp_path):
    figures = tmp_path / "figures"
    save_figures(None, figures, {"lr_schedule.png": _line([1, 2, 3])})
    first = (figures / "lr_schedule.png").read_bytes()
    save_figures(None, figures, {"lr_schedule.png": _line([3, 1, 0, 5])})
    assert (figures / "lr_schedule.png").read_bytes() != first


def test_with_a_figure_logger_the_figure_is_logged_and_saved_once(tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir()
    logger = _FigureLogger(figures)
    paths = save_figures(logger, figures, {"a.png": _line([1, 2])})
    assert logger.logged == ["a.png"] and paths == {"a.png": str(figures / "a.png")}
    assert (figures / "a.png").is_file()
