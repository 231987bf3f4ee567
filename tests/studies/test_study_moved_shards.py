"""A study rerun on its shard set moved (or copied) elsewhere: each row's fingerprint held `data.shards`, the
folder, so every finished row was deleted and trained again. It now holds the set's digest."""
from __future__ import annotations

import shutil

from support.clip import clip_config
from support.shards import make_shard_set


def _fp(tmp_path, shards, seed=0, name="moved"):
    from mmlnb_dist.studies import job_fingerprint, row_config

    cfg = clip_config(shards, tmp_path / "runs", name=name)
    return job_fingerprint(row_config(cfg, "concat", [], seed, tmp_path / "runs" / name))


def test_a_rows_fingerprint_follows_its_shard_sets_content_not_its_folder(tmp_path):
    here = make_shard_set(tmp_path / "a")
    before = _fp(tmp_path, here)
    moved = shutil.move(str(here), str(tmp_path / "elsewhere"))
    assert _fp(tmp_path, moved) == before
    other = make_shard_set(tmp_path / "b", per_class=7)  # other data
    assert _fp(tmp_path, other) != before
    assert _fp(tmp_path, moved, seed=1) != before


def test_a_row_recorded_with_the_folder_in_its_fingerprint_is_kept(tmp_path):
    """Rows trained before the fingerprint held the digest are not retrained by the upgrade."""
    from mmlnb_dist.pipeline.stages import fingerprint, stage_file
    from mmlnb_dist.studies import row_config
    from mmlnb_dist.studies.fingerprints import _result_settings

    shards = make_shard_set(tmp_path / "a")
    run_cfg = row_config(clip_config(shards, tmp_path / "runs", name="old"), "concat", [], 0, tmp_path / "runs" / "old")
    old = fingerprint("study-run", _result_settings(run_cfg))
    assert _fp(tmp_path, shards, name="old") != old
    run_cfg.run.dir.mkdir(parents=True)
    stage_file(run_cfg.run.dir).write_text(f'{{"fingerprint": "{old}", "status": "done"}}')
    from mmlnb_dist.studies import job_fingerprint

    assert job_fingerprint(run_cfg) == old


def test_a_row_stopped_on_its_set_in_another_folder_starts_again(tmp_path):
    """Its recipe refuses a resume with another data.shards, so the row is fingerprinted with its folder."""
    import yaml

    from mmlnb_dist.pipeline.stages import stage_file
    from mmlnb_dist.studies import job_fingerprint, row_config

    shards = make_shard_set(tmp_path / "a")
    run_cfg = row_config(clip_config(shards, tmp_path / "runs", name="s"), "concat", [], 0, tmp_path / "runs" / "s")
    fp = job_fingerprint(run_cfg)
    run_cfg.run.dir.mkdir(parents=True)
    for stored, resumes in ((tmp_path / "old-place", False), (shards, True)):
        (run_cfg.run.dir / "config.yaml").write_text(yaml.safe_dump({"data": {"shards": str(stored)}}))
        stage_file(run_cfg.run.dir).write_text(f'{{"fingerprint": "{fp}", "status": "running"}}')
        assert (job_fingerprint(run_cfg) == fp) is resumes, stored
