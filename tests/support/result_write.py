"""A kill during the write of a run's result (`metrics.json`, `core.recipe.write_result`), for the recipes' finish
tests: `kill_result_writes(monkeypatch)` arms it; from then on a write of the result dies after its first half
reached the disk."""
from __future__ import annotations

import builtins
import io
from pathlib import Path


class Killed(KeyboardInterrupt):
    pass


def is_result(file) -> bool:
    """metrics.json itself, or a temporary file that becomes it (not metrics.jsonl)."""
    name = Path(str(file)).name
    return name == "metrics.json" or (name.startswith("metrics.json.") and name.endswith(".tmp"))


def kill_result_writes(monkeypatch) -> None:
    real_open = builtins.open

    def opening(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if not is_result(file) or not any(c in mode for c in "wxa"):
            return handle
        real_write = handle.write

        def half_then_die(text):
            real_write(text[: len(text) // 2])
            handle.flush()
            raise Killed("killed during the write of metrics.json")
        handle.write = half_then_die
        return handle

    monkeypatch.setattr(builtins, "open", opening)
    monkeypatch.setattr(io, "open", opening)
