"""An output folder of `pipeline` or `ablate` that is an existing FILE (`run.output_dir`, the pipeline's own folder,
the study's folder, `data.shards` to build) got a bare `NotADirectoryError` / `FileExistsError` traceback from mkdir,
iterdir or rmtree, after the stages before it had run. Now each is refused before any work, naming the file."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.pipeline import run_stage
from support.cli import run_cli


def _into(tmp_path, **paths):
    folders = {"run.output_dir": tmp_path / "runs", "data.synth_dir": tmp_path / "src",
               "data.shards": tmp_path / "shards", **paths}
    return [f"{k}={v}" for k, v in folders.items()] + ["data.synth.n=30", "data.synth.n_slides=6"]


def _only(tmp_path, keep):
    return sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


@pytest.mark.parametrize("where", ["output_dir", "pipeline_dir", "shards", "synth_dir", "under_a_file"])
def test_a_pipeline_whose_output_folder_is_a_file_is_refused_before_any_work(tmp_path, where):
    runs = tmp_path / "runs"
    paths = {}
    if where == "output_dir":
        runs.write_text("")
        blocked = runs
    elif where == "pipeline_dir":
        runs.mkdir()
        blocked = runs / "cpu-demo-pipeline"
        blocked.write_text("")
    elif where == "under_a_file":
        (tmp_path / "f").write_text("")
        blocked, paths = tmp_path / "f", {"run.output_dir": tmp_path / "f" / "runs"}
    else:
        blocked = tmp_path / ("shards" if where == "shards" else "src")
        blocked.write_text("")
    code, _, err = run_cli(["pipeline", "--config", "cpu-demo", "--synthetic", *_into(tmp_path, **paths)])
    assert code == 2, err
    assert f"{blocked} is a file, not a folder" in err and "Traceback" not in err, err
    assert blocked.is_file() and not (tmp_path / "src").is_dir() and not (tmp_path / "shards").is_dir()
    assert not (runs / "cpu-demo-pipeline" / "pipeline.log").exists()


@pytest.mark.parametrize("where", ["output_dir", "study_dir"])
def test_an_ablate_whose_study_folder_is_a_file_is_refused_before_any_work(tmp_path, where):
    runs = tmp_path / "runs"
    if where == "output_dir":
        runs.write_text("")
        blocked = runs
    else:
        runs.mkdir()
        blocked = runs / "cpu-demo-study"  # ablate's own folder, beside the train run's
        blocked.write_text("")
    code, _, err = run_cli(["ablate", "--config", "cpu-demo", "--descriptions", "shards",
                            f"run.output_dir={runs}", f"data.shards={tmp_path / 'shards'}"])
    assert code == 2, err
    assert f"{blocked} is a file, not a folder" in err and "Traceback" not in err, err
    assert _only(tmp_path, ["runs"]) and (blocked.is_file())


def test_a_stage_whose_output_is_a_file_is_refused_naming_it(tmp_path):
    out = tmp_path / "out"
    out.write_text("a user's file")
    ran = []
    for record in (False, True):  # with no record beside it, and with one (an earlier run's folder, replaced)
        if record:
            (tmp_path / ".out.stage.json").write_text('{"fingerprint": "old", "status": "done"}')
        with pytest.raises(UserError, match=f"{out} is a file, not a folder"):
            run_stage("train", out, "fp", lambda resume: ran.append(resume) or {})
        assert out.read_text() == "a user's file" and not ran


def test_a_stage_output_below_a_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match=f"{tmp_path / 'f'} is a file, not a folder"):
        run_stage("describe", Path(tmp_path / "f" / "out"), "fp", lambda resume: {})


@pytest.mark.parametrize("profile, given, missing", [
    ("cpu-demo", ["--slides", "{tmp}/wsi", "--labels", "{tmp}/labels.csv"], "--labels"),
    ("cpu-demo", ["--slides", "{tmp}/nowhere", "--labels", "{tmp}/labels.csv"], "--slides"),
    ("clip-demo", ["--patches", "{tmp}/nowhere"], "--patches"),
])
def test_a_missing_input_is_refused_by_its_flag_before_the_log_is_opened(tmp_path, profile, given, missing):
    """A --slides, --labels or --patches that is not there was found by the first stage: after the command had
    opened its log file (a refused command left <run.output_dir>/<run.name>-pipeline/pipeline.log), and named
    only the path."""
    (tmp_path / "wsi").mkdir()
    if missing != "--labels":
        (tmp_path / "labels.csv").write_text("slide_id,label\n")
    args = [a.format(tmp=tmp_path) for a in given]
    vlm = [f"vlm.pairs={tmp_path / 'pairs'}", "vlm.finetune=false"] if profile == "cpu-demo" else []
    code, _, err = run_cli(["pipeline", "--config", profile, *args, *_into(tmp_path), *vlm])
    path = args[args.index(missing) + 1]
    assert code == 2 and f"{missing} {path}: not found" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()
