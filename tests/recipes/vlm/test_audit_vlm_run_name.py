"""Mutation audit of `config.vlm_run_name`: `finetune-vlm --name-after-fusion-run` (what launch/finetune_vlm.sh
passes) and `pipeline` put the VLM run beside the fusion run as `<run.name>-vlm`; with the rtx4090 profile that is
runs/rtx4090-vlm, the folder whose adapter launch/describe.sh is documented to read. Another suffix would send
describe to a folder nothing wrote."""
from __future__ import annotations

from pathlib import Path

from mmlnb_dist.config import load_config
from mmlnb_dist.recipes.vlm.config import vlm_run_name

from support.vlm import ROOT


def test_the_vlm_run_is_named_after_the_fusion_run_where_the_launch_scripts_look_for_it():
    cfg = load_config(ROOT / "launch/profiles/rtx4090.yaml", [])
    fusion_dir = cfg.run.dir
    cfg.run.name = vlm_run_name(cfg.run.name)
    assert cfg.run.name == "rtx4090-vlm"
    assert cfg.run.dir == fusion_dir.parent / "rtx4090-vlm" != fusion_dir
    adapter = Path(cfg.run.output_dir).name + f"/{cfg.run.name}/adapter"
    assert f"--adapter {adapter} " in (ROOT / "launch/describe.sh").read_text()
    assert f"{adapter}, what launch/describe.sh --adapter reads" in (ROOT / "launch/finetune_vlm.sh").read_text()
