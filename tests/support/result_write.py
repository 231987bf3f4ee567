"""Probes for the write of a run's result (`metrics.json`, `core.recipe.write_result`) and the recipes' finish:
`kill_result_writes(monkeypatch)` makes every later write of the result die after its first half reached the disk
(a kill during the write); `stand_in_finish_parts` and `finish_writes_through_write_result` run a finish on
stand-ins."""
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


def finish_writes_through_write_result(finish_module, recipe, monkeypatch) -> None:
    """A recipe's `finish(recipe)` writes its result once, through `core.recipe.write_result` (whole or not at all)."""
    from mmlnb_dist.core import recipe as core_recipe

    written = []
    monkeypatch.setattr(finish_module, "write_result",
                        lambda run_dir, result: written.append(result) or core_recipe.write_result(run_dir, result))
    result = finish_module.finish(recipe)
    assert len(written) == 1 and written[0]["run_dir"] == result["run_dir"]


def stand_in_finish_parts(finish_module, monkeypatch) -> None:
    """A recipe's finish without DeepSpeed's consolidation, the rank-0 barrier, the export and its record."""
    import contextlib

    monkeypatch.setattr(finish_module, "full_fp32_state_dict", lambda model, optimizer: {})
    monkeypatch.setattr(finish_module, "rank0_alone", lambda env, wait: contextlib.nullcontext())
    monkeypatch.setattr(finish_module, "export_model", lambda *a, **k: None)
    monkeypatch.setattr(finish_module, "record_export", lambda *a: None)
