"""benchmarks/gpu_machine/run_pipeline_full_size.sh, the GPU machine's run of the rtx4090 profile with local
random-weight folders in place of the hub models, runs here with small models of the same layout (SHRINK=1): the
folders load through the recipes' own loading code (`vlm.model` and the text encoder as local paths), every stage up
to train runs, and the random VLM writes non-empty descriptions of the full length, so the classifier's text branch
reads text (an empty description would make the train stage's timing meaningless)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_machine" / "run_pipeline_full_size.sh"


def test_the_full_size_pipeline_script_runs_every_stage_from_local_model_folders(tmp_path):
    new_tokens = 8
    env = {**os.environ, "PYTHON": sys.executable, "SHRINK": "1", "N": "36", "EPOCHS": "1", "OUT": str(tmp_path),
           "GPU_CARRY": str(tmp_path / "no-carry"), "TMPDIR": str(tmp_path),
           "EXTRA": f"vlm.generation.max_new_tokens={new_tokens} data.loader.num_workers=2 data.synth.n_slides=6"}
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    log = (tmp_path / "pipeline_full_size_stdout.log")
    detail = proc.stdout[-3000:] + (log.read_text()[-3000:] if log.exists() else "")
    assert proc.returncode == 0 and "pipeline exit 0" in proc.stdout, detail
    report = (tmp_path / "report_full_size.md").read_text()
    for stage in ("synth", "shards", "finetune-vlm", "describe", "train"):
        assert f"| {stage} | ran |" in report, report
    work = next(tmp_path.glob("gpu-full-size.*"))
    overrides = (work / "models" / "overrides.txt").read_text().split()
    assert f"vlm.model={work / 'models' / 'qwen2.5-vl-7b'}" in overrides
    assert f"fusion.model.text_encoder.name={work / 'models' / 'bert-base-uncased'}" in overrides
    # Every patch described, none empty, and at full length: the tokenizer re-encodes each to max_new_tokens.
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.recipes.vlm.model import load_processor

    tok = load_processor(str(work / "models" / "qwen2.5-vl-7b"), 256 * 256, 256 * 256).tokenizer
    texts = [sample["txt"].decode() for shard in sorted((work / "shards-described").glob("*.tar"))
             for sample in iter_shard_samples(shard)]
    assert len(texts) == 36 and all(t.strip() for t in texts), texts[:5]
    lengths = [len(tok(t, add_special_tokens=False).input_ids) for t in texts]
    assert sum(n >= new_tokens - 2 for n in lengths) >= 0.9 * len(texts), lengths
    metrics_file = work / "runs" / "rtx4090-fusion" / "metrics.jsonl"
    metrics = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    assert metrics, "the train stage logged no metrics"
