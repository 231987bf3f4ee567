"""Whole-slide tiling (fields are filled in by the slides issue)."""
from __future__ import annotations

from .base import Section


class SlidesConfig(Section):
    pass
