"""A `data synth` stopped part-way (Ctrl-C, a killed job) wrote its class folders but not labels.csv (written last):
`shards build --input` then read the bare class folders, without slide ids (a patch-level split, a warning at
most), or an earlier run's labels.csv over this run's half-rewritten patches. The generator marks its folder
incomplete for the whole job; a build from a marked folder is refused naming it, and a rerun completes it."""
from __future__ import annotations

import pytest

import mmlnb_dist.data.synthetic as synthetic
from mmlnb_dist.data.collect import collect_samples
from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset
from mmlnb_dist.data.shardset import ShardError


def test_a_build_from_a_stopped_data_synth_is_refused_and_a_rerun_completes_it(tmp_path, monkeypatch):
    src = tmp_path / "src"
    render, calls = synthetic._render_item, []

    def stopped_after_four(job):
        calls.append(job)
        if len(calls) > 4:
            raise KeyboardInterrupt  # the user's Ctrl-C, part-way through the patches
        return render(job)

    monkeypatch.setattr(synthetic, "_render_item", stopped_after_four)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_dataset(src, n=9, size=16, n_slides=3, seed=1, workers=1)
    assert list(src.rglob("*.png")) and not (src / "labels.csv").exists()  # the state a kill leaves
    with pytest.raises(ShardError, match=r"src: a `data synth` into it did not finish.*rerun"):
        collect_samples(src, CLASSES)
    monkeypatch.setattr(synthetic, "_render_item", render)
    make_synthetic_dataset(src, n=9, size=16, n_slides=3, seed=1, workers=1)  # the rerun completes the folder
    samples = collect_samples(src, CLASSES)
    assert len(samples) == 9 and all(s.slide_id for s in samples)


def test_a_multilabel_build_from_a_stopped_synth_is_refused(tmp_path, monkeypatch):
    import mmlnb_dist.data.generated as generated
    from mmlnb_dist.data.config import MultiLabelConfig
    from mmlnb_dist.data.multilabel import read_multilabel_csv
    from mmlnb_dist.data.synthetic_multilabel import make_multilabel_dataset

    src = tmp_path / "ml"
    make_multilabel_dataset(src, n=4, size=16, n_slides=2, seed=1)
    read_multilabel_csv(src / "pairs.csv", MultiLabelConfig())  # a finished set reads
    (src / generated.INCOMPLETE_MARKER).write_text("data synth started writing this folder and has not finished\n")
    with pytest.raises(ShardError, match=r"ml: a `data synth` into it did not finish"):
        read_multilabel_csv(src / "pairs.csv", MultiLabelConfig())
