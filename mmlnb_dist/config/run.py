"""Where a run writes, what it is called, and its seed."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from .base import Section


class RunConfig(Section):
    output_dir: Path = Path("runs")
    """Parent folder of run folders; each run writes to `<output_dir>/<name>`."""

    name: str = "mmlnb"
    """Run name: the run folder's name and the MLflow run name."""

    seed: int = Field(0, ge=0)
    """Global seed: model init, data shuffling, augmentation and dropout derive from it."""

    resume: bool = False
    """Continue the run found in the run folder from its latest checkpoint instead of starting afresh."""

    @property
    def dir(self) -> Path:
        return self.output_dir / self.name
