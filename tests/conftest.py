"""Shared fixtures. Everything runs on the CPU, offline, with tiny models."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Shared helpers live in tests/support (`from support.shards import ...`); with --import-mode=importlib the test
# folders are not put on sys.path, so put tests/ there once.
TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

# Model hubs are unreachable: make any accidental download fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# DeepSpeed builds its CPU ops (shared-memory collectives, CPU Adam) into TORCH_EXTENSIONS_DIR, by default one folder
# per user. Two checkouts (two venvs) generate different build files, so sharing the folder makes each rebuild
# the op in turn (minutes, under a file lock every rank waits on): keep one folder per environment.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
# Under pytest-xdist (`-n N`, how CI runs) each worker is one of N processes sharing the cores: torch's intra-op
# threads (one per core by default) would oversubscribe them N-fold, and OpenMP's spinning threads then make a
# test several times slower (the CLIP science test: 40 s alone, 247 s beside another worker). One thread per
# worker, and per process it starts (the multi-rank tests already give their ranks one thread each).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A search that ends as interrupted raises `SearchInterrupted`, a KeyboardInterrupt (the CLI's exit 130): let
    out of a test, pytest takes it for the user's Ctrl-C and ends the whole session early. It fails that test."""
    from mmlnb_dist.tuning.stop import SearchInterrupted

    try:
        return (yield)
    except SearchInterrupted as err:
        raise AssertionError(f"the search ended as interrupted ({err}); expect it with "
                             f"pytest.raises(SearchInterrupted)") from err
