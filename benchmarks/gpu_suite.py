"""The GPU suite (issue 15, item 4): one command, every figure the GPU machine should record.

    .venv/bin/python benchmarks/gpu_suite.py --out gpu_suite.json          # a CUDA machine, under 8 minutes
    .venv/bin/python benchmarks/gpu_suite.py --tiny --out tiny.json        # the same code paths, tiny, CPU

Rows (each isolated: a failure is a row with the error and the suite goes on; CUDA memory freed and the peak
counter reset between rows):
(a) fusion training samples/s and model FLOP utilisation, VGG16 + BERT-base, 224 px, bf16, batch 32, per
    curriculum phase of the rtx4090 profile (gpu_suite/fusion.py);
(b) Qwen2.5-VL-7B LoRA fine-tuning peak memory and tokens/s at the profile's micro batch and sequence length,
    with and without gradient checkpointing, and ZeRO-2 with the optimizer offloaded (gpu_suite/vlm.py);
(c) describe throughput at batch 16 and 256 new tokens (gpu_suite/vlm.py);
(d) the shard loader feeding the device, normalisation on the device (gpu_suite/loader.py).
Full-size models are built from their configs with random weights (no downloads). Prints one table and writes
JSON (device name, peak FLOP/s, torch/CUDA versions, every row) to --out, rewritten after every row with
"complete": false until the end, so a run stopped by a time limit keeps the rows it measured.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The VLM section last: it is the longest, and its ZeRO-Offload row may first build DeepSpeed's CPU Adam.
SECTIONS = ("fusion", "loader", "vlm")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU: the same code paths, fast")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS),
                    help="run only these sections (vlm includes describe)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch

    from gpu_suite import fusion, loader, vlm
    from gpu_suite.common import Suite, environment, format_table

    if args.tiny:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda", 0)
        torch.cuda.set_device(device)
    else:
        ap.error("no CUDA device: run with --tiny on a CPU-only machine")
    env = environment(device)
    print(f"device: {env['device_name']}  torch {env['torch']}  CUDA {env['cuda']}  "
          f"peak bf16: {env['peak_bf16_flops'] or 'unknown'}", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
        suite = Suite(device=device, tiny=args.tiny, work=Path(tmp))
        suite.after_row = lambda: write_result(args.out, env, args.tiny, suite.rows, t0, table=None)
        if "fusion" in args.only:
            fusion.add_rows(suite, env["peak_bf16_flops"])
        if "vlm" in args.only:
            vlm.add_rows(suite)
        if "loader" in args.only:
            loader.add_rows(suite)
    notes = [f"device {env['device_name']}, torch {env['torch']}, CUDA {env['cuda']}, "
             f"{'tiny models on the CPU' if args.tiny else 'full-size models, random weights'}; "
             f"load {os.getloadavg()[0]:.2f}; {time.perf_counter() - t0:.0f} s in all"]
    if env["peak_bf16_flops"] is None:
        notes.append("MFU: unknown (the device is not in gpu_suite/common.py PEAK_BF16_FLOPS)")
    for r in suite.rows:
        if r["section"] == "vlm" and r.get("plan_estimate_gib") and r["status"] == "ok":
            notes.append(f"{r['name']}: peak {r['peak_memory_gib']} GiB vs the memory plan's "
                         f"{r['plan_estimate_gib']} GiB for these settings (plan: {vlm.MEMORY_PLAN_GIB} GiB with "
                         f"checkpointing) and ms-swift's published {vlm.MS_SWIFT_GIB} GiB")
    table = format_table(suite.rows, notes)
    print("\n" + table)
    write_result(args.out, env, args.tiny, suite.rows, t0, table=table)
    print(f"wrote {args.out}")
    return 0


def write_result(out: Path, env, tiny: bool, rows, t0: float, table) -> None:
    """The JSON: `table` None means the run is still going ("complete": false, the rows so far)."""
    from gpu_suite.vlm import MEMORY_PLAN_GIB, MS_SWIFT_GIB

    result = {"environment": env, "tiny": tiny, "complete": table is not None, "rows": rows, "table": table,
              "memory_references_gib": {"memory_plan": MEMORY_PLAN_GIB, "ms_swift": MS_SWIFT_GIB},
              "seconds": round(time.perf_counter() - t0, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(result, indent=2, default=str))
    os.replace(partial, out)  # a reader (or a kill) never sees half a file


if __name__ == "__main__":
    sys.exit(main())
