"""The adapter was written in place: a kill or a full disk while `finetune-vlm` saved it again (the end of a resumed,
longer run rewrites `<run>/adapter`) left torn weights under the earlier adapter's adapter_config.json, which
`describe --adapter` and `export-vlm` took for an adapter. It is now written beside and moved into place whole: a
failed save leaves the earlier adapter as it was, a finished one replaces it."""
from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from mmlnb_dist.core.distributed import DistEnv


class _Peft(torch.nn.Module):
    """Stands in for a peft model: writes its weight, then its config; `fail` stops it half way (a full disk)."""

    def __init__(self, value: float, fail: bool = False):
        super().__init__()
        self.value, self.fail = value, fail
        self.peft_config = {"default": types.SimpleNamespace(base_model_name_or_path="base")}

    def save_pretrained(self, folder, **kwargs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "adapter_model.safetensors").write_text(f"weights {self.value}"[: 4 if self.fail else None])
        if self.fail:
            raise OSError(28, "No space left on device")
        (Path(folder) / "adapter_config.json").write_text(f'{{"v": {self.value}}}')


def _contents(folder: Path):
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_a_failed_save_leaves_the_earlier_adapter_and_a_finished_one_replaces_it(tmp_path, monkeypatch):
    from mmlnb_dist.recipes.vlm import adapter as A

    monkeypatch.setattr(A, "trainable_state_dict", lambda model, env: {"lora_A.weight": torch.ones(2, 2)})
    monkeypatch.setattr("peft.get_peft_model_state_dict", lambda model, state_dict: dict(state_dict))
    out = tmp_path / "run" / "adapter"
    A.save_adapter(_Peft(1.0), out, DistEnv())
    first = _contents(out)
    assert first == {"adapter_config.json": '{"v": 1.0}', "adapter_model.safetensors": "weights 1.0"}
    with pytest.raises(OSError, match="No space left"):
        A.save_adapter(_Peft(2.0, fail=True), out, DistEnv())
    assert _contents(out) == first
    A.save_adapter(_Peft(3.0), out, DistEnv())
    assert _contents(out) == {"adapter_config.json": '{"v": 3.0}', "adapter_model.safetensors": "weights 3.0"}
    assert sorted(p.name for p in out.parent.iterdir()) == ["adapter"]  # nothing of the saves left beside it
