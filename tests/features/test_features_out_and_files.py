"""Where `features extract` writes, and what a run finds there later:
- `features extract --out` where features cannot or must not go is refused before any work, naming it: a file (a
  `FileExistsError` traceback), or a folder holding other things and no extraction (a training run's folder,
  another shard set: the features, provenance.json and index.json were written in among its files). An empty
  folder, or one an extraction started (its provenance.json), is used as before.
- A finished extraction whose per-shard file is gone or damaged since (deleted, copied half-way) is refused naming
  the file and the command that redoes it, when a run reads the features: it was a `FileNotFoundError` / safetensors
  traceback from `load_features`. The same `features extract` command redoes that file, and the features load."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.features import FeaturesError, extract_features, load_features
from mmlnb_dist.models.config import ImageEncoderConfig


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from support.shards import make_shard_set

    return make_shard_set(tmp_path_factory.mktemp("out-shards"), per_class=2, max_per_shard=3, val_fraction=0.25)


def _extract(shards, out):
    return extract_features(ImageEncoderConfig(name="tiny", pretrained=False), shards, out, env=DistEnv(), seed=0,
                            batch_size=4, loader_image_size=24, progress=False)


# -- --out --------------------------------------------------------------------------------------------------


def test_an_out_that_is_a_file_is_refused(shards, tmp_path):
    (tmp_path / "feats").write_text("a file")
    with pytest.raises(UserError, match=r"--out .*feats is a file"):
        _extract(shards, tmp_path / "feats")
    assert (tmp_path / "feats").read_text() == "a file"


def test_a_folder_of_other_things_is_refused_and_left_as_it_was(shards, tmp_path):
    run = tmp_path / "runs" / "r1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("run: {name: r1}\n")
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(UserError, match=r"--out .*r1 holds other files than extracted .*\(checkpoints, config.yaml\)"):
        _extract(shards, run)
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_folder_of_other_temporary_files_is_refused_and_only_its_own_leftovers_are_let_through(shards, tmp_path):
    """Every `*.tmp` was let through as an extraction's leftover: a folder of another tool's `.tmp` files took the
    features in among them. Only this extraction's own leftovers (`<shard file>.<pid>.tmp`) are."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "download.tmp").write_text("another tool's file")
    with pytest.raises(UserError, match=r"--out .*scratch holds other files than extracted .*\(download\.tmp\)"):
        _extract(shards, scratch)
    assert sorted(p.name for p in scratch.iterdir()) == ["download.tmp"]
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.features.store import feature_file

    own = tmp_path / "own"
    own.mkdir()
    first = ShardSet.open(shards).entries()[0][2]["file"]
    (own / f"{feature_file(own, first).name}.4242.tmp").write_bytes(b"half")  # a killed extraction's leftover
    assert _extract(shards, own)["processed_now"] > 0


def test_an_empty_folder_and_a_finished_extraction_are_used(shards, tmp_path):
    out = tmp_path / "feats"
    out.mkdir()
    first = _extract(shards, out)
    again = _extract(shards, out)  # a rerun into its own extraction: nothing to redo
    assert again["processed_now"] == 0 and first["processed_now"] > 0 and len(load_features(out)) == 6


# -- a features file gone since ---------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_missing_or_torn_feature_file_is_named_and_a_rerun_redoes_it(shards, tmp_path, damage):
    out = tmp_path / "feats"
    _extract(shards, out)
    whole = load_features(out)
    victim = sorted(out.glob("*.safetensors"))[0]
    if damage == "deleted":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:50])
    with pytest.raises(FeaturesError, match="features extract") as err:
        load_features(out)
    assert victim.name in str(err.value)
    assert _extract(shards, out)["processed_now"] > 0
    again = load_features(out)
    assert sorted(again) == sorted(whole) and all(bool((again[k] == whole[k]).all()) for k in whole)


def test_a_deleted_feature_file_is_found_with_the_index_before_any_work(shards, tmp_path):
    from mmlnb_dist.features import check_files_present

    out = tmp_path / "feats"
    _extract(shards, out)
    victim = sorted(out.glob("*.safetensors"))[-1]
    victim.unlink()
    with pytest.raises(FeaturesError, match="features extract") as err:
        check_files_present(out)  # what a fusion.image_features run checks with its config, before its run folder
    assert victim.name in str(err.value)
