"""Batch prediction with a registered model (`mmlnb-dist predict`).

Inputs: image files, folders of images, shard folders (with manifest.json) or single .tar shards. Every input
that cannot be read is listed with its reason; the others still get predictions. Descriptions come from the
shards' `txt`, a `--descriptions` CSV/JSONL (an image column `key`, `path`, `image` or `file`, the text in
`description` or `--description-column`, optional `slide_id` or `--slide-column`; rows match images by path, never
by a file name two images share), or a VLM. With slide ids, a per-slide file gives the mean probability and the
majority vote per slide.

Multi-label models (the CLIP recipe; their metadata says `task: multilabel`) give each image a probability per
label and a predicted label set (`labels`, `|`-joined): the model's top k, `--top-k K`, or `--threshold T`. Their
per-slide file gives the mean probability of every label and the label set chosen the same way from those means
(a majority vote of one label per patch means nothing when a patch has several).

An interrupted job resumes: every finished chunk is journaled beside the output (`<out>.resume/`, `journal.py`),
the same command again predicts only what is left, and two jobs into one output are refused.

Modules: `inputs` (what the paths hold), `model` (loading a registered model safely), `run` (`predict_to_file`),
`journal` (resuming), `slides` (per-slide aggregates), `errors`.
"""
from __future__ import annotations

from .errors import ModelNotFound, PredictError, UnsafeModel
from .inputs import collect_inputs
from .model import load_model
from .run import PREDICT_CHUNK, predict_to_file
from .slides import multilabel_slide_aggregates, slide_aggregates

__all__ = ["ModelNotFound", "PredictError", "UnsafeModel", "collect_inputs", "load_model", "PREDICT_CHUNK",
           "predict_to_file", "multilabel_slide_aggregates", "slide_aggregates"]
