"""`describe` skips a sample it cannot describe (an undecodable image, a strip the processor refuses) and lists it
in the output manifest's `skipped`, but said nothing: the printed summary gave `num_samples` one short of the input
without a word of why, and the missing description surfaced only when the fusion stage lacked it. The summary now
counts the skipped samples and a warning names each (key, shard, reason); `described_now` (and samples/s) counts
only what the VLM described, not the skipped samples."""
from __future__ import annotations

import json

from support.cli import run_cli
from support.vlm import ROOT, flat_png

PIX = 56 * 56


def test_describe_counts_and_names_the_samples_it_skipped(tmp_path, cache):
    from mmlnb_dist.data.build import SampleSpec, build_shards
    from mmlnb_dist.data.config import BuildConfig

    samples = [SampleSpec(key=f"sq{i}", label="UD", image=flat_png((56, 56))) for i in range(3)] + \
        [SampleSpec(key="strip0", label="PD", image=flat_png((1, 300)))]
    build = BuildConfig(max_samples_per_shard=8, val_fraction=0.0, test_fraction=0.0, image_format="original",
                        group_by_slide=False, seed=0)
    build_shards(samples, tmp_path / "pairs", build, ["UD", "PD", "D"], progress=False)
    code, out, err = run_cli([
        "describe", "--config", str(ROOT / "launch" / "profiles" / "cpu-demo.yaml"), "--vlm", "tiny", "--shards",
        str(tmp_path / "pairs"), "--out", str(tmp_path / "described"), "vlm.generation.max_new_tokens=2",
        "vlm.generation.batch_size=4", "data.loader.max_bad_sample_rate=0.5", f"run.output_dir={tmp_path / 'runs'}",
        "tracking.backends=[stdout]", f"vlm.cache_dir={cache}", "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}",
        f"vlm.max_pixels={PIX}", "data.loader.num_workers=0"])
    assert code == 0, err[-3000:]
    summary = json.loads(out[out.index("{"):])
    assert summary["num_samples"] == 3 and summary["skipped"] == 1, summary
    assert summary["described_now"] == 3, summary  # (the skipped strip was counted as described, and in samples/s)
    said = [line for line in err.splitlines() if "strip0" in line]
    assert said and "1 of 4" in said[0] and "aspect ratio" in said[0] and "train-000000.tar" in said[0], err[-2000:]
