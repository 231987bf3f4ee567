"""The node-8gpu profile's header said "the VLM uses ZeRO-2 with 2 per GPU", but the profile sets
`distributed: {zero_stage: 1}` for every stage, and finetune-vlm builds its DeepSpeed config from `distributed`:
a user sizing a 7B fine-tune from the comment planned for sharded gradients the run never had. The header now says
what the profile gives each pipeline stage on 8 GPUs: the ZeRO stage and the micro batch per GPU."""
from __future__ import annotations

import re
from pathlib import Path

from mmlnb_dist.config import load_config
from mmlnb_dist.core.distributed import plan_batch

PROFILE = Path(__file__).resolve().parents[1] / "mmlnb_dist" / "profiles" / "node-8gpu.yaml"
GPUS = 8


def _header() -> str:
    lines = PROFILE.read_text().splitlines()
    return " ".join(line.lstrip("# ") for line in lines[:next(i for i, l in enumerate(lines) if not l.startswith("#"))])


def test_the_node_8gpu_header_says_what_the_profile_sets():
    cfg = load_config(PROFILE)
    header = _header()
    assert set(re.findall(r"ZeRO-(\d)", header)) == {str(cfg.distributed.zero_stage)}, header
    micro = cfg.distributed.micro_batch_per_gpu
    fusion = plan_batch(cfg.train.global_batch_size, GPUS, micro)
    vlm = plan_batch(cfg.vlm.global_batch_size, GPUS, cfg.vlm.micro_batch_per_gpu or micro)
    assert re.search(rf"fusion[^;.]*\b{fusion.micro_batch} per GPU", header), header
    assert re.search(rf"VLM[^;.]*\b{vlm.micro_batch} per GPU", header), header
