"""Fixtures of the core tests."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.core.logging import PACKAGE


@pytest.fixture
def package_logger():
    """The package logger as a test found it (handlers, their levels and filters) is restored afterwards."""
    logger = logging.getLogger(PACKAGE)
    handlers = list(logger.handlers)
    saved = [(h, h.level, list(h.filters)) for h in handlers]
    yield logger
    for h in list(logger.handlers):
        if h not in handlers:
            logger.removeHandler(h)
            h.close()
    for h, level, filters in saved:
        h.setLevel(level)
        h.filters = filters
    logger.handlers = handlers
