"""A user's DeepSpeed JSON (`distributed.deepspeed_config`) counts in stage and study fingerprints by its content:
the same path edited (another ZeRO stage, bf16 on) trains another model, and the pipeline skipped the stage as up
to date, reporting the model trained with the old file. A config without one keeps its fingerprint."""
from __future__ import annotations

import json

from mmlnb_dist.core.sections import DistributedConfig


def test_an_edited_deepspeed_json_changes_the_fingerprint_and_the_same_content_keeps_it(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    before = DistributedConfig(deepspeed_config=str(path)).results_dump()
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}}))  # rewritten, same content
    assert DistributedConfig(deepspeed_config=str(path)).results_dump() == before
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    assert DistributedConfig(deepspeed_config=str(path)).results_dump() != before


def test_a_config_without_a_deepspeed_json_keeps_its_fingerprint():
    dumped = DistributedConfig().results_dump()
    assert dumped == DistributedConfig().model_dump(mode="json", exclude={"rank0_wait_s"})
