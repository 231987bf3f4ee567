"""An image with one side more than 200 times the other (a 1 x 300 px strip) is one Qwen2.5-VL's processor refuses
(`smart_resize`: "absolute aspect ratio must be smaller than 200"). `finetune-vlm` met it as a ValueError traceback
(mid-training, or in the check that sizes every image), and `describe` lost the whole batch holding it to the same
traceback. Fine-tuning now refuses it before the run folder, naming the sample, its size and the remedy; describe
skips it as it skips an undecodable image (listed in the manifest's `skipped`, counted against
`data.loader.max_bad_sample_rate`) and describes the rest."""
from __future__ import annotations

import json

import pytest

from support.cli import run_cli
from support.vlm import ROOT, flat_png

PIX = 56 * 56
PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")


@pytest.fixture(scope="module")
def strip(tmp_path_factory):
    """Three square pairs and one 1 x 300 px strip, all in train."""
    from mmlnb_dist.data.build import SampleSpec, build_shards
    from mmlnb_dist.data.config import BuildConfig

    root = tmp_path_factory.mktemp("strip")
    samples = [SampleSpec(key=f"sq{i}", label="UD", image=flat_png((56, 56)), description="Round cells.")
               for i in range(3)] + [SampleSpec(key="strip0", label="PD", image=flat_png((1, 300)),
                                                description="Neuropil.")]
    build = BuildConfig(max_samples_per_shard=8, val_fraction=0.0, test_fraction=0.0, image_format="original",
                        group_by_slide=False, seed=0)
    build_shards(samples, root / "pairs", build, ["UD", "PD", "D"], progress=False)
    return root / "pairs"


def _common(tmp_path, cache):
    return [f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[stdout]", f"vlm.cache_dir={cache}",
            "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}", "data.loader.num_workers=0"]


def test_finetune_refuses_an_elongated_image_before_the_run_folder(strip, tmp_path, cache):
    runs = tmp_path / "runs"
    code, _, err = run_cli(["finetune-vlm", "--config", PROFILE, f"vlm.pairs={strip}", "run.name=strip",
                            "vlm.global_batch_size=2", "vlm.max_steps=1", *_common(tmp_path, cache)])
    assert code == 2, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert "strip0" in last and "1x300" in last and "vlm.pairs" in last, last
    assert not runs.exists() or not any(runs.iterdir()), sorted(p.name for p in runs.rglob("*"))


def test_describe_skips_an_elongated_image_and_describes_the_rest(strip, tmp_path, cache):
    out = tmp_path / "described"
    code, _, err = run_cli(["describe", "--config", PROFILE, "--vlm", "tiny", "--shards", str(strip), "--out",
                            str(out), "vlm.generation.max_new_tokens=2", "vlm.generation.batch_size=4",
                            "data.loader.max_bad_sample_rate=0.5", *_common(tmp_path, cache)])
    assert code == 0, err[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["key"] for s in manifest["skipped"]] == ["strip0"], manifest["skipped"]
    assert "aspect ratio" in manifest["skipped"][0]["reason"]
    assert manifest["splits"]["train"]["num_samples"] == 3
