"""`data.shards=.` (a pipeline started inside its shard set): the describe stage writes `<shard set's absolute
path>-described` beside it (`describe.described_beside`), but the check made before the first stage built
`.-described` itself, inside the shard set, so a file standing where describe would write was not refused up
front and the run failed with a bare NotADirectoryError after its VLM stages. The check now asks the same rule."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.files import refuse_file_in_the_way
from mmlnb_dist.pipeline.flow import PipelineInputs, stage_folders
from mmlnb_dist.recipes.vlm.describe import described_beside


@pytest.mark.parametrize("shards", [".", "..", "sub/set"])
def test_the_checked_described_folder_is_the_one_describe_writes(tmp_path, monkeypatch, shards):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub" / "set").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "sub")
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}", f"data.shards={shards}"])
    folders = stage_folders(cfg, PipelineInputs(), ["describe", "train"])
    assert folders["the described shard set"].resolve() == described_beside(cfg.data.shards).resolve()


def test_a_file_where_the_described_set_of_dot_goes_is_refused_before_any_stage(tmp_path, monkeypatch):
    (tmp_path / "set").mkdir()
    (tmp_path / "set-described").write_text("not a folder")
    monkeypatch.chdir(tmp_path / "set")
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}", "data.shards=."])
    folder = stage_folders(cfg, PipelineInputs(), ["describe"])["the described shard set"]
    with pytest.raises(UserError, match="set-described is a file"):
        refuse_file_in_the_way(folder, "the described shard set")
