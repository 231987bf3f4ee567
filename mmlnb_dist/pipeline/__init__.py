"""The one-command pipeline: every stage of the paper, in order, each skipped when its output is up to date.

    synth | tile | patches -> shards -> finetune-vlm -> describe -> train -> evaluate -> register
                                                              (`mmlnb-dist pipeline`, `mmlnb-dist demo`)
    finetune-vlm -> describe -> train, in a search's shared cache      (the `vlm-fusion` trial)

- `stages`: fingerprints, the stage record beside each output, skip / resume / rebuild (`run_stage`);
- `steps`: the data, VLM and training stages; `finish`: evaluate (patch and slide level) and register;
- `flow`: the pipelines and `--from` / `--until`; `report`: the final report and the paper's tables;
- `changes`: what a rebuilt stage's record says changed (its settings and inputs, by name);
- `inputs`: what user-given folders and the local files a setting names hold (their fingerprints).
"""
from __future__ import annotations

from .finish import pipeline_dir, plan_evaluate, plan_register, registered_name, slide_level
from .flow import STAGES, PipelineInputs, PipelineRun, run_demo, run_pipeline, run_vlm_fusion, stages_for
from .inputs import local_inputs
from .report import PAPER_COLUMNS, final_report
from .stages import (PlannedStage, StageResult, existing_shards, fingerprint, is_up_to_date, read_stage, recorded,
                     run_planned, run_stage, stage_file, stopped_reading_elsewhere)
from .steps import (base_vlm_stage, plan_describe, plan_finetune_vlm, plan_shards, plan_synth, plan_tile,
                    plan_train, stage_describe, stage_finetune_vlm, stage_shards, stage_synth, stage_train)

__all__ = [
    "PAPER_COLUMNS", "STAGES", "PipelineInputs", "PipelineRun", "PlannedStage", "StageResult", "base_vlm_stage",
    "existing_shards",
    "final_report", "fingerprint", "is_up_to_date", "local_inputs", "pipeline_dir", "plan_describe",
    "plan_evaluate", "plan_finetune_vlm", "plan_register", "plan_shards", "plan_synth", "plan_tile", "plan_train",
    "read_stage", "recorded",
    "registered_name", "run_demo", "run_pipeline", "run_planned", "run_stage",
    "run_vlm_fusion", "slide_level", "stage_describe", "stage_file", "stage_finetune_vlm", "stage_shards",
    "stage_synth", "stage_train",
    "stages_for", "stopped_reading_elsewhere",
]
