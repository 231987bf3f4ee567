"""What every row of the GPU suite shares: the device, its peak bf16 FLOP/s, isolated rows, timing, the table."""
from __future__ import annotations

import gc
import logging
import platform
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch

log = logging.getLogger(__name__)

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, in FLOP/s; matched by substring of
# torch.cuda.get_device_name(), most specific first. Anything else: "unknown" (no utilisation is computed).
PEAK_BF16_FLOPS = (
    ("H200", 989.4e12),
    ("H100 PCIe", 756.0e12),
    ("H100", 989.4e12),  # SXM / NVL
    ("A100", 312.0e12),
    ("L40S", 362.05e12),
    ("L40", 181.05e12),
    ("RTX 4090", 165.2e12),  # fp32 accumulation (what autocast/bf16 GEMMs use)
    ("RTX 6000 Ada", 364.2e12),
    ("L4", 121.0e12),
    ("A10G", 70.0e12),
    ("A10", 125.0e12),
)


def peak_bf16_flops(device_name: str) -> Optional[float]:
    for key, flops in PEAK_BF16_FLOPS:
        if key in device_name:
            return flops
    return None


@dataclass
class Suite:
    """Options shared by every row, and the rows measured so far."""

    device: torch.device
    tiny: bool
    work: Any  # a temporary folder (pathlib.Path) for synthetic shards and caches
    rows: List[Dict[str, Any]] = field(default_factory=list)
    warmed: set = field(default_factory=set)
    """The kinds of work already run once at full size in this process (see `vlm.measure_describe`)."""
    after_row: Optional[Callable[[], None]] = None
    """Called after every row: the suite saves what it has, so a run cut off by a time limit keeps its rows."""

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def run_row(self, section: str, name: str, measure: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
        """One isolated measurement: its failure becomes a row with the error; CUDA memory is freed and the
        peak counter reset before it, so each row's peak is its own."""
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        row: Dict[str, Any] = {"section": section, "name": name}
        try:
            row.update(measure())
            row.setdefault("status", "ok")
        except Exception as err:  # a failed row must not stop the suite: it is reported instead
            log.warning("row %s / %s failed: %s", section, name, err)
            row.update(status="error", error=f"{type(err).__name__}: {err}",
                       traceback=traceback.format_exc(limit=8))
        row["wall_s"] = round(time.perf_counter() - t0, 2)
        self.rows.append(row)
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
        print(f"  {section:8s} {name:44s} {row['status']}"
              + (f"  ({row.get('error', row.get('reason', ''))[:160]})" if row["status"] != "ok" else ""), flush=True)
        if self.after_row is not None:
            self.after_row()
        return row

    def peak_memory_gib(self) -> Optional[float]:
        return round(torch.cuda.max_memory_allocated(self.device) / 1024 ** 3, 2) if self.cuda else None


def timed_steps(suite: Suite, step: Callable[[], Any], warmup: int, steps: int) -> float:
    """Seconds for `steps` calls of `step` after `warmup` untimed ones (the device synchronised around)."""
    for _ in range(warmup):
        step()
    suite.sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    suite.sync()
    return time.perf_counter() - t0


def count_flops(step: Callable[[], Any]) -> int:
    """FLOPs of one call of `step` by torch.utils.flop_counter (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def environment(device: torch.device) -> Dict[str, Any]:
    """Device name, peak, torch / CUDA / library versions: the JSON's header."""
    import transformers

    info: Dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
                            "transformers": transformers.__version__, "python": platform.python_version(),
                            "cpu": platform.processor() or platform.machine()}
    try:
        import deepspeed

        info["deepspeed"] = deepspeed.__version__
    except Exception as err:  # the suite still runs the rows that do not need it
        info["deepspeed"] = f"unavailable: {err}"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=name, device_memory_gib=round(props.total_memory / 1024 ** 3, 1),
                    cudnn=torch.backends.cudnn.version(), peak_bf16_flops=peak_bf16_flops(name))
    else:
        info.update(device_name="cpu", peak_bf16_flops=None)
    return info


def format_table(rows: List[Dict[str, Any]], notes: List[str]) -> str:
    """One Markdown table of every row (the columns each section fills), then the notes."""
    cols = [("section", "section"), ("name", "row"), ("samples_per_s", "samples/s"), ("tokens_per_s", "tokens/s"),
            ("descriptions_per_s", "descr./s"), ("tflops_per_step", "TFLOP/step"), ("mfu", "MFU"),
            ("peak_memory_gib", "peak GiB"), ("plan_estimate_gib", "plan GiB"), ("status", "status")]
    lines = ["| " + " | ".join(title for _, title in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for key, _ in cols:
            v = r.get(key)
            if key == "status" and v != "ok":
                v = f"{v}: {r.get('error') or r.get('reason', '')}"[:120]
            cells.append("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])
