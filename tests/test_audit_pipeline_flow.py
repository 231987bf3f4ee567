"""Mutation-audit guards of the one-command pipeline's flow (`mmlnb_dist.pipeline.flow`, `.stages`, `.steps`): the
stages each source runs and their order, `--from` / `--until` as inclusive ends (the stages before `--from` taken as
an earlier run left them, none after `--until`), the checks a slice makes before its first stage, a changed setting
rerunning the stage it reaches and every later one (never an earlier one), and rank 0's stages against every rank's."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.pipeline import PipelineInputs, fingerprint, finish, read_stage, run_pipeline, stages_for, steps
from mmlnb_dist.pipeline import flow, inputs
from mmlnb_dist.pipeline.flow import check_slice
from mmlnb_dist.pipeline.stages import PlannedStage, StageResult, recorded, run_stage

TAIL = ["train", "evaluate", "register"]
VLM = ["finetune-vlm", "describe"]


def _cfg(tmp_path, *overrides):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}", f"data.synth_dir={tmp_path / 'src'}",
                                    f"data.shards={tmp_path / 'shards'}", *overrides])


# --- which stages, in which order -------------------------------------------------------------------------------

def test_each_source_runs_its_own_first_stage_then_the_vlm_stages_then_training(tmp_path):
    """--synthetic: synth then shards; --slides: tile alone (it writes the shard set); --patches or a shard set at
    data.shards: shards. The VLM stages only for a recipe that reads descriptions, finetune-vlm only when on."""
    cfg, labels = _cfg(tmp_path), tmp_path / "labels.csv"
    assert stages_for(cfg, PipelineInputs(synthetic=True)) == ["synth", "shards", *VLM, *TAIL]
    assert stages_for(cfg, PipelineInputs(slides=tmp_path, labels=labels)) == ["tile", *VLM, *TAIL]
    assert stages_for(cfg, PipelineInputs(patches=tmp_path)) == ["shards", *VLM, *TAIL]
    assert stages_for(cfg, PipelineInputs()) == ["shards", *VLM, *TAIL]
    base_vlm = _cfg(tmp_path, "vlm.finetune=false")
    assert stages_for(base_vlm, PipelineInputs(synthetic=True)) == ["synth", "shards", "describe", *TAIL]
    clip = _cfg(tmp_path, "train.recipe=clip", "train.best_metric=micro_f1")
    assert stages_for(clip, PipelineInputs(synthetic=True)) == ["synth", "shards", *TAIL]


@pytest.mark.parametrize("inputs", [dict(slides="s", labels="l", patches="p"), dict(patches="p", synthetic=True),
                                    dict(slides="s", labels="l", synthetic=True)])
def test_two_sources_of_patches_are_refused(tmp_path, inputs):
    with pytest.raises(UserError, match="give one source of patches"):
        stages_for(_cfg(tmp_path), PipelineInputs(**inputs))


def test_from_and_until_are_inclusive_ends_in_the_pipeline_s_order():
    """One stage alone (`--from train --until train`) is a slice; --from after --until is refused."""
    names = ["synth", "shards", *VLM, *TAIL]
    assert check_slice(names, "train", "train") == ("train", "train")
    assert check_slice(names, "synth", "register") == ("synth", "register")
    with pytest.raises(UserError, match="--from describe comes after --until finetune-vlm"):
        check_slice(names, "describe", "finetune-vlm")


# --- run_pipeline over stand-in stages ----------------------------------------------------------------------------

class Stand:
    """Stand-in stages for every `steps` / `finish` planner: each fingerprints its own setting (`settings[name]`) and
    the fingerprints of the stages it reads, as the real planners do, and notes which rank's work ran."""

    MAIN_ONLY = {"synth", "shards", "register"}

    def __init__(self, root: Path, monkeypatch, rank: int = 0):
        self.root, self.rank, self.settings, self.worked, self.checked = root, rank, {}, [], []
        mp = monkeypatch
        mp.setattr(steps, "plan_synth", lambda cfg: self.plan("synth"))
        mp.setattr(steps, "plan_shards", lambda cfg, source: self.plan("shards", source))
        mp.setattr(steps, "pairs_for", lambda cfg, shards: shards)
        mp.setattr(steps, "by_content", lambda shards: shards)  # the stand-in shards have no manifest to digest
        mp.setattr(steps, "plan_finetune_vlm", lambda cfg, pairs, env: self.plan("finetune-vlm", pairs))
        mp.setattr(steps, "plan_describe", lambda cfg, vlm, shards, env: self.plan("describe", vlm, shards))
        mp.setattr(steps, "plan_train", lambda cfg, data, env: self.plan("train", data))
        mp.setattr(finish, "plan_evaluate", lambda cfg, train, data, env: self.plan("evaluate", train, data))
        mp.setattr(finish, "read_evaluation", lambda result: None)
        mp.setattr(finish, "plan_register", lambda cfg, train: self.plan("register", train))
        opened = SimpleNamespace(require_split=lambda split, purpose: self.checked.append(split))
        mp.setattr("mmlnb_dist.data.shardset.ShardSet.open", lambda path: opened)
        # what check_pipeline asks before the first stage, noted instead of loading models
        mp.setattr(steps, "require_pairs", lambda cfg, source, path=None: self.checked.append("pairs"))
        mp.setattr("mmlnb_dist.recipes.vlm.source.check_vlm_loadable", lambda *a: self.checked.append("vlm"))
        mp.setattr(flow, "check_precision", lambda *a: self.checked.append("precision"))
        mp.setattr(flow, "check_configs", lambda cfg, world, recipes: self.checked.extend(recipes))
        mp.setattr(steps, "recipe_class", lambda name: SimpleNamespace(check_models=lambda cfg: self.checked.append(
            "models")))
        mp.setattr(flow, "init_engine_process_group", lambda *a: None)

    def plan(self, name: str, *reads: StageResult) -> PlannedStage:
        out = self.root / name

        def work(resume):
            self.worked.append(name)
            out.mkdir(parents=True, exist_ok=True)
            return {}

        fp = fingerprint(name, self.settings.get(name), [r.fingerprint for r in reads])
        return PlannedStage(name, out, fp, work, main_only=name in self.MAIN_ONLY)

    def run(self, cfg, first=None, last=None, env=None):
        self.worked, self.checked = [], []
        return run_pipeline(cfg, PipelineInputs(synthetic=True), first, last, env=env or DistEnv())


def _statuses(run):
    return {r.name: r.status for r in run.results}


ALL = ["synth", "shards", *VLM, *TAIL]


def test_a_slice_reuses_the_stages_before_from_runs_from_to_until_and_stops_there(tmp_path, monkeypatch):
    stand, cfg = Stand(tmp_path / "out", monkeypatch), _cfg(tmp_path)
    assert _statuses(stand.run(cfg)) == dict.fromkeys(ALL, "ran") and stand.worked == ALL
    report_dir = finish.pipeline_dir(cfg)
    assert (report_dir / "report.md").is_file()

    stand.settings["describe"] = "changed"  # reaches describe and every later stage
    run = stand.run(cfg, first="finetune-vlm", last="train")
    assert _statuses(run) == {"synth": "reused", "shards": "reused", "finetune-vlm": "skipped", "describe": "ran",
                              "train": "ran"}
    assert stand.worked == ["describe", "train"]
    assert read_stage(tmp_path / "out" / "shards")["owner"] == cfg.run.name  # never rebuilt for another run
    assert (report_dir / "report-finetune-vlm-train.md").is_file()

    run = stand.run(cfg)  # the rest of what the changed setting reaches, nothing before it
    assert stand.worked == ["evaluate", "register"]
    assert [r.name for r in run.results if r.status == "skipped"] == ["synth", "shards", *VLM, "train"]


def test_a_changed_setting_reruns_the_stage_it_reaches_and_every_later_one(tmp_path, monkeypatch):
    stand, cfg = Stand(tmp_path / "out", monkeypatch), _cfg(tmp_path)
    stand.run(cfg)
    for i, name in enumerate(ALL):
        stand.settings[name] = f"changed-{i}"
        stand.run(cfg)
        assert stand.worked == (["evaluate"] if name == "evaluate" else ALL[i:]), name  # register reads train


def test_a_slice_checks_only_what_its_own_stages_would_refuse(tmp_path, monkeypatch):
    """The VLM's pairs before a finetune-vlm, the VLM's loading before finetune-vlm or describe, the precision before
    a DeepSpeed stage, the models and the recipe's config before train, the shard set's train and val splits before
    the VLM stages of a slice that reaches train; nothing of stages outside the slice."""
    stand, cfg = Stand(tmp_path / "out", monkeypatch), _cfg(tmp_path)
    stand.run(cfg)
    assert stand.checked == ["pairs", "vlm", "precision", "fusion", "vlm", "models", "train", "val"]
    for first, last, checked in [("finetune-vlm", "finetune-vlm", ["pairs", "vlm", "precision", "vlm"]),
                                 ("describe", "describe", ["vlm"]),
                                 ("train", "train", ["precision", "fusion", "models", "train", "val"]),
                                 ("synth", "shards", []), ("evaluate", None, ["train", "val"])]:
        stand.run(cfg, first, last)
        assert stand.checked == checked, (first, last)


def test_on_another_rank_rank_0_s_stages_do_no_work_and_nothing_is_written(tmp_path, monkeypatch):
    """synth, shards and register are rank 0's; finetune-vlm, describe, train and evaluate every rank's. Another rank
    writes no stage record and no report."""
    stand, cfg = Stand(tmp_path / "out", monkeypatch), _cfg(tmp_path)
    stand.run(cfg, env=DistEnv(rank=1, world_size=2))
    assert stand.worked == [*VLM, "train", "evaluate"]
    assert all(read_stage(tmp_path / "out" / name) == {} for name in ALL)
    assert not finish.pipeline_dir(cfg).exists()


def test_the_real_planners_give_rank_0_the_data_stages_and_every_rank_the_training(tmp_path):
    cfg = _cfg(tmp_path, "vlm.finetune=true")
    source = StageResult("synth", tmp_path / "src", "0" * 16, True, 0.0)
    shards = StageResult("shards", tmp_path / "shards", "1" * 16, True, 0.0)
    vlm = StageResult("finetune-vlm", tmp_path / "vlm", "2" * 16, True, 0.0, {"adapter_dir": "a"})
    assert steps.plan_synth(cfg).main_only and steps.plan_shards(cfg, source).main_only
    (tmp_path / "wsi").mkdir()
    (tmp_path / "labels.csv").write_text("slide_id,label\n")
    assert steps.plan_tile(cfg, tmp_path / "wsi", tmp_path / "labels.csv").main_only
    assert not any(p.main_only for p in (steps.plan_finetune_vlm(cfg, shards), steps.plan_describe(cfg, vlm, shards),
                                         steps.plan_train(cfg, shards)))


# --- the real planners' fingerprints ------------------------------------------------------------------------------

def _fingerprints(tmp_path, *overrides):
    """synth -> shards -> finetune-vlm (or the base VLM) -> describe -> train, each planned on the one before it."""
    cfg, env = _cfg(tmp_path, *overrides), DistEnv()
    synth = steps.plan_synth(cfg)
    shards = steps.plan_shards(cfg, StageResult("synth", synth.output, synth.fingerprint, True, 0.0))
    shards = StageResult("shards", shards.output, shards.fingerprint, True, 0.0)
    if cfg.vlm.finetune:
        vlm = steps.plan_finetune_vlm(cfg, shards, env)
        vlm = StageResult("finetune-vlm", vlm.output, vlm.fingerprint, True, 0.0, {"adapter_dir": "a"})
    else:
        vlm = steps.base_vlm_stage(cfg)
    described = steps.plan_describe(cfg, vlm, shards, env)
    train = steps.plan_train(cfg, StageResult("describe", described.output, described.fingerprint, True, 0.0), env)
    return [synth.fingerprint, shards.fingerprint, vlm.fingerprint, described.fingerprint, train.fingerprint]


@pytest.mark.parametrize("change, first", [
    # data.classes: the classes the synthetic set is painted with, and the shards build with
    ("data.synth.n=60", "synth"), ("data.build.image_size=64", "shards"), ("data.classes=[UD,D]", "synth"),
    ("vlm.lora.r=8", "finetune-vlm"), ("vlm.prompt=Say it.", "finetune-vlm"),
    ("vlm.generation.max_new_tokens=8", "describe"), ("fusion.model.mode=concat", "train"), ("train.lr=0.01", "train"),
    ("data.loader.image_size=32", "train"), ("run.seed=7", "finetune-vlm"),
    # with the base VLM (vlm.finetune=false) the prompt reaches describe first, the seed train
    ("vlm.finetune=false vlm.prompt=Say it.", "describe"), ("vlm.finetune=false run.seed=7", "train"),
])
def test_a_setting_changes_the_fingerprint_of_the_first_stage_it_reaches_and_every_later_one(tmp_path, change, first):
    names = ["synth", "shards", "finetune-vlm", "describe", "train"]
    *given, change = change.split(" ", 1) if change.startswith("vlm.finetune=false") else [change]
    base, changed = _fingerprints(tmp_path, *given), _fingerprints(tmp_path, *given, change)
    i = names.index(first)
    assert base[:i] == changed[:i] and all(a != b for a, b in zip(base[i:], changed[i:])), (change, base, changed)


def test_a_user_s_input_folder_changes_its_fingerprint_with_any_file_s_size_or_time(tmp_path):
    import os

    folder = tmp_path / "patches"
    (folder / "a").mkdir(parents=True)
    image = folder / "a" / "1.png"
    image.write_bytes(b"xx")
    before = inputs.files_fingerprint(folder)
    stat = image.stat()
    image.write_bytes(b"yy")  # same size: only its time tells
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = inputs.files_fingerprint(folder)
    image.write_bytes(b"yyy")
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same time: only its size tells
    assert len({before, touched, inputs.files_fingerprint(folder)}) == 3


def test_another_pipeline_run_s_stale_output_is_refused_not_rebuilt(tmp_path):
    out = tmp_path / "shards"
    run_stage("shards", out, "a", lambda resume: out.mkdir() or {}, owner="run-a")
    (out / "kept.txt").write_text("run-a's")
    with pytest.raises(UserError, match="pipeline run 'run-a'"):
        run_stage("shards", out, "b", lambda resume: {}, owner="run-b")
    assert (out / "kept.txt").is_file()
    run_stage("shards", out, "a", lambda resume: {}, owner="run-b")  # up to date: shared, not refused


# --- stage records: kept open, resumed, taken before --from -------------------------------------------------------

def test_a_stage_kept_open_is_resumed_by_the_next_run_not_skipped(tmp_path):
    """A stage that could not finish for a reason outside the pipeline (`keep_open`: a tracking server down) keeps
    its record `running`: the same command resumes it instead of taking it as done."""
    from mmlnb_dist.pipeline.stages import KEEP_OPEN

    out, calls = tmp_path / "register", []

    def work(resume):
        calls.append(resume)
        out.mkdir(exist_ok=True)
        return {KEEP_OPEN: True, "reason": "server down"} if len(calls) == 1 else {}

    run_stage("register", out, "fp", work)
    assert read_stage(out)["status"] == "running"
    again = run_stage("register", out, "fp", work)
    assert not again.skipped and calls == [False, True] and read_stage(out)["status"] == "done"


def test_a_stage_left_running_is_refused_before_from_and_counted_as_resumed(tmp_path):
    """A run killed outright leaves the record its stage opened with (`running`, no time, no count): --from a later
    stage refuses it as incomplete, and the run that resumes it records two runs."""
    out = tmp_path / "describe"
    run_stage("describe", out, "fp", lambda resume: out.mkdir() or {})
    stage_file = out.parent / f".{out.name}.stage.json"
    stage_file.write_text('{"fingerprint": "fp", "status": "running"}')  # as the start of the killed run wrote it
    with pytest.raises(UserError, match=r"--from train: .*'describe'.* is not complete \(status running\)"):
        recorded(PlannedStage("describe", out, "fp", lambda resume: {}), "train")
    resumed = run_stage("describe", out, "fp", lambda resume: {"resumed": resume})
    assert resumed.info["resumed"] is True and resumed.info["runs"] == 2


def test_the_tiling_fingerprint_follows_the_slides_settings_and_the_labels(tmp_path):
    """A changed slides.* setting or labels CSV re-tiles (and so rebuilds every later stage); the same ones do not."""
    slides, labels = tmp_path / "wsi", tmp_path / "labels.csv"
    slides.mkdir()
    (slides / "s1.tiff").write_bytes(b"slide")
    labels.write_text("slide_id,label\ns1,UD\n")

    def tile(*overrides):
        return steps.plan_tile(_cfg(tmp_path, *overrides), slides, labels).fingerprint

    base = tile()
    assert tile() == base
    assert tile("slides.sampling.overlap=0.5") != base
    labels.write_text("slide_id,label\ns1,D\n")  # (another size: no clock needed)
    assert tile() != base
