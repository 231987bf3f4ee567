"""`finetune-vlm` refuses a bad config the way every command does: one line naming the key on stderr, exit
code 2, no traceback, and no run folder (the checks run before core.recipe.run takes the folder). Through the
CLI, as a user meets it: one subprocess per case (a few seconds: the stack's imports)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support.vlm import ROOT, make_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("vlm_cli") / "pairs", n=24)  # 18 training pairs


@pytest.mark.parametrize("overrides, key", [
    (["vlm.global_batch_size=6", "vlm.micro_batch_per_gpu=4"], "vlm.global_batch_size"),  # 6 = 4 x ?
    (["vlm.global_batch_size=32"], "vlm.global_batch_size"),  # more than the 18 training pairs
    (["vlm.pairs={tmp}/missing"], "vlm.pairs"),
], ids=["indivisible", "larger-than-the-pairs", "no-shard-set"])
def test_bad_config_exits_2_naming_the_key_and_leaves_no_folder(pairs, tmp_path, overrides, key):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mmlnb_dist.cli", "finetune-vlm", "--config", "launch/profiles/cpu-demo.yaml",
           f"vlm.pairs={pairs}", f"run.output_dir={runs}", "run.name=bad", "tracking.backends=[stdout]",
           f"vlm.cache_dir={tmp_path / 'cache'}",
           "vlm.tiny_vision=random", *[o.format(tmp=tmp_path) for o in overrides]]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert error and key in error[-1], proc.stderr[-2000:]
    assert not runs.exists() or not any(runs.iterdir()), sorted(p.name for p in runs.rglob("*"))
    assert not (tmp_path / "cache").exists()  # nothing was built either


@pytest.mark.parametrize("vlm, says", [
    ("{tmp}/no-such-model", "no such folder"),
    ("Qwen/Qwen2.5-VL-3B-Instruct", "Hugging Face cache"),  # not in the cache, no network: HF_HUB_OFFLINE
], ids=["missing-folder", "hub-id-not-cached"])
def test_a_vlm_that_cannot_be_loaded_exits_2_and_leaves_no_output(pairs, tmp_path, vlm, says):
    """`describe --vlm` with a model that is not there was a traceback (exit code 1) after the output folder had
    been claimed with the bad model's provenance, so the rerun with the right model was refused until --restart."""
    out = tmp_path / "described"
    cmd = [sys.executable, "-m", "mmlnb_dist.cli", "describe", "--config", "launch/profiles/cpu-demo.yaml",
           "--shards", str(pairs), "--out", str(out), "--vlm", vlm.format(tmp=tmp_path),
           f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[stdout]", "data.loader.num_workers=0"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert vlm.format(tmp=tmp_path) in last and says in last, last
    assert not out.exists()


@pytest.mark.parametrize("overrides, key, says", [
    (["vlm.lora.target_modules=[q_proj,qproj]"], "vlm.lora.target_modules", "qproj"),  # a typo beside a match
    (["vlm.lora.target_modules=[qkv]"], "vlm.lora.target_modules", "vlm.lora.vision_lora"),  # a vision name
    (["vlm.lora.modules_to_save=[lm_haed]"], "vlm.lora.modules_to_save", "lm_head"),
    (["vlm.prompt=Describe <|image_pad|> this."], "vlm.prompt", "<|image_pad|>"),  # the template places the image
    (["vlm.max_length=40"], "vlm.max_length", "vlm.max_pixels"),  # no room for an answer after prompt and image
], ids=["misspelled-target", "vision-target", "misspelled-module-to-save", "vision-token-in-prompt", "max-length"])
def test_settings_that_fit_no_part_of_the_model_exit_2_before_the_run_folder(pairs, tmp_path, overrides, key, says):
    """LoRA names that match nothing were ignored beside one that matched (q_proj adapted, `qproj` not, no word),
    recorded as trained (`modules_to_save=[lm_haed]`), or a ValueError traceback after the run folder existed. A
    prompt holding Qwen's vision tokens and a vlm.max_length below the prompt and image were tracebacks mid-run."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mmlnb_dist.cli", "finetune-vlm", "--config", "launch/profiles/cpu-demo.yaml",
           f"vlm.pairs={pairs}", f"run.output_dir={runs}", "run.name=bad", "tracking.backends=[stdout]",
           f"vlm.cache_dir={tmp_path / 'cache'}", "vlm.tiny_vision=random", "vlm.max_steps=1", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert error and key in error[-1] and says in error[-1], proc.stderr[-2000:]
    assert not runs.exists() or not any(runs.iterdir()), sorted(p.name for p in runs.rglob("*"))


def test_eval_every_without_a_val_split_is_refused_before_the_folder(tmp_path):
    """`vlm.eval_every` asks for a validation loss every so many steps; on pairs without a val split none was ever
    computed (nor the one "always at the end"), without a word, and the run looked validated. Refused, as the
    Hugging Face Trainer refuses step evaluation without an eval set, naming the key and the set."""
    pairs = make_pairs(tmp_path / "pairs", n=16, val_fraction=0.0)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mmlnb_dist.cli", "finetune-vlm", "--config", "launch/profiles/cpu-demo.yaml",
           f"vlm.pairs={pairs}", f"run.output_dir={runs}", "run.name=noval", "tracking.backends=[stdout]",
           f"vlm.cache_dir={tmp_path / 'cache'}", "vlm.tiny_vision=random", "vlm.global_batch_size=4",
           "vlm.eval_every=2"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "vlm.eval_every" in last and "val" in last and str(pairs) in last, last
    assert not runs.exists() or not any(runs.iterdir())
