"""Ray Tune searches (fields are filled in by the tuning issue)."""
from __future__ import annotations

from .base import Section


class TuneConfig(Section):
    pass
