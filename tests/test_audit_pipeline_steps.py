"""Mutation audit of the pipeline's planned stages (`pipeline/steps.py`): what a user's input is fingerprinted
with, and what each stage's work hands the recipe it runs (its data, its run name, whether it resumes) and records
for the later stages. The recipes, the tiler and the describer are stand-ins here: nothing is trained or tiled."""
from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.pipeline import inputs, steps
from mmlnb_dist.pipeline.stages import StageResult
from support.shards import write_patch_folder

SHARDS = StageResult("shards", Path("/data/shards"), "fp-shards", True, 0.0, {}, status="skipped")


def _cfg(tmp_path, *overrides):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}", f"data.shards={tmp_path / 'shards'}",
                                    "run.name=demo", *overrides])


# --- what a user's input is fingerprinted with -------------------------------------------------------------------

def test_an_input_that_is_not_there_is_refused_by_its_path(tmp_path):
    with pytest.raises(UserError, match=f"input not found: {tmp_path / 'patches'}"):
        inputs.files_fingerprint(tmp_path / "patches")
    with pytest.raises(UserError, match="input not found"):
        inputs.patches_fingerprint(tmp_path / "labels.csv")


def test_a_folder_s_labels_csv_listing_an_image_outside_it_follows_that_image(tmp_path):
    """labels.csv may name images anywhere: one outside the folder is read by the shards stage, so a change to it
    must rebuild the shards (the folder's own files are fingerprinted already)."""
    folder, elsewhere = tmp_path / "patches", write_patch_folder(tmp_path / "elsewhere", per_class=1)
    folder.mkdir()
    image = elsewhere / "UD" / "UD_000.png"
    (folder / "labels.csv").write_text(f"path,label\n{image},UD\n")
    before = inputs.patches_fingerprint(folder)
    assert inputs.patches_fingerprint(folder) == before
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert inputs.patches_fingerprint(folder) != before


def test_a_patches_csv_that_cannot_be_read_is_still_fingerprinted_for_the_shards_stage_to_refuse(tmp_path):
    """A CSV without the columns the shards stage needs: planning fingerprints it as it is (the shards stage then
    refuses it with its own message), it does not fail before that."""
    table = tmp_path / "labels.csv"
    table.write_text("image,class\na.png,UD\n")
    before = inputs.patches_fingerprint(table)
    table.write_text("image,class\na.png,UD\nb.png,D\n")
    assert inputs.patches_fingerprint(table) != before


def test_a_patches_csv_listing_an_image_that_is_missing_is_still_fingerprinted(tmp_path):
    """The shards stage says which listed image is missing; planning does not fail on it first. The image appearing
    later changes the fingerprint (the shards are rebuilt with it)."""
    table = tmp_path / "labels.csv"
    table.write_text("path,label\nUD/gone.png,UD\n")
    before = inputs.patches_fingerprint(table)
    write_patch_folder(tmp_path, per_class=1)
    (tmp_path / "UD" / "UD_000.png").rename(tmp_path / "UD" / "gone.png")
    assert inputs.patches_fingerprint(table) != before


def test_an_input_file_s_name_is_part_of_what_it_holds(tmp_path):
    """Two CSVs of the same size and time are two inputs: the name a user gives is fingerprinted with them."""
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for f in (first, second):
        f.write_text("path,label\n")
        os.utime(f, ns=(0, 1_000_000_000))
    assert inputs.files_fingerprint(first) != inputs.files_fingerprint(second)


# --- tiling -----------------------------------------------------------------------------------------------------

def _tile_with(tmp_path, monkeypatch, report):
    from mmlnb_dist.slides import tiler

    (tmp_path / "wsi").mkdir()
    (tmp_path / "labels.csv").write_text("slide_id,label\n")
    monkeypatch.setattr(tiler, "tile_slides", lambda *a, **k: report)
    return steps.plan_tile(_cfg(tmp_path), tmp_path / "wsi", tmp_path / "labels.csv")


def test_tiling_records_the_slides_it_kept_and_their_tiles_not_the_problem_slides(tmp_path, monkeypatch):
    problem = {"slide_id": "s3", "status": "unreadable", "kept": 0}
    report = SimpleNamespace(manifest={"splits": {}}, qc_dir=tmp_path / "qc", problems=[problem],
                             results=[{"slide_id": "s1", "kept": 5}, {"slide_id": "s2", "kept": 7}, problem])
    info = _tile_with(tmp_path, monkeypatch, report).work(False)
    assert (info["slides"], info["tiles"], info["problems"]) == (2, 12, [problem])


def test_tiling_that_kept_no_tile_is_refused_with_where_to_look(tmp_path, monkeypatch):
    report = SimpleNamespace(manifest=None, qc_dir=tmp_path / "qc", problems=[], results=[])
    with pytest.raises(UserError, match=r"no tile was kept from any slide \(QC pictures in .*qc\)"):
        _tile_with(tmp_path, monkeypatch, report).work(False)


# --- what the VLM, describe and train stages hand their recipe ---------------------------------------------------

@pytest.fixture
def recipes(monkeypatch):
    """`steps.run_recipe` as a stand-in: records the config each stage's work hands it."""
    seen = []

    def run_recipe(recipe, cfg, env=None):
        seen.append(cfg.model_copy(deep=True))
        return {"adapter_dir": "/a", "base_model": "tiny", "base_model_seconds": 3.5, "train_loss": 0.5,
                "val_loss": 0.7, "accuracy": 0.9}

    monkeypatch.setattr(steps, "run_recipe", run_recipe)
    return seen


@pytest.mark.parametrize("resume", [False, True])
def test_the_fine_tune_learns_from_the_stage_s_pairs_in_its_own_run_and_resumes_when_told(tmp_path, recipes, resume):
    planned = steps.plan_finetune_vlm(_cfg(tmp_path), SHARDS)
    info = planned.work(resume)
    (cfg,) = recipes
    assert (cfg.vlm.pairs, cfg.run.name, cfg.run.resume) == (SHARDS.output, "demo-vlm", resume)
    assert planned.output == tmp_path / "runs" / "demo-vlm"
    assert info == {"adapter_dir": "/a", "base_model": "tiny", "base_model_seconds": 3.5,
                    "losses": {"train_loss": 0.5, "val_loss": 0.7}}


@pytest.mark.parametrize("resume", [False, True])
def test_training_reads_the_stage_s_shards_registers_nothing_itself_and_resumes_when_told(tmp_path, recipes, resume):
    cfg = _cfg(tmp_path, "tracking.register_name=nb-model")
    planned = steps.plan_train(cfg, SHARDS)
    info = planned.work(resume)
    (seen,) = recipes
    assert (seen.data.shards, seen.run.resume, seen.tracking.register_name) == (SHARDS.output, resume, None)
    assert seen.run.name == f"demo-{cfg.train.recipe}" and planned.output == tmp_path / "runs" / seen.run.name
    assert info["data_shards"] == str(SHARDS.output) and info["run_dir"] == str(planned.output)
    assert info["metrics"]["accuracy"] == 0.9
    assert cfg.data.shards == tmp_path / "shards" and cfg.tracking.register_name == "nb-model"  # the caller's, kept


def test_the_described_set_sits_beside_the_shards_and_is_written_by_the_fine_tuned_adapter(tmp_path, monkeypatch):
    from mmlnb_dist.recipes.vlm import describe

    seen = {}

    def run_describe(cfg, vlm, adapter, shards_in, out, env=None, progress=True):
        seen.update(adapter=adapter, shards_in=shards_in, out=out)
        return {"num_samples": 12, "quality": {"bleu": 0.1}}

    monkeypatch.setattr(describe, "run_describe", run_describe)
    shards = StageResult("shards", tmp_path / "shards", "fp-shards", True, 0.0)
    vlm = StageResult("finetune-vlm", tmp_path / "vlm", "fp-vlm", True, 0.0, {"adapter_dir": "/adapter"})
    planned = steps.plan_describe(_cfg(tmp_path), vlm, shards)
    assert planned.output == tmp_path / "shards-described"
    assert planned.work(False) == {"num_samples": 12, "quality": {"bleu": 0.1}}
    assert seen == {"adapter": "/adapter", "shards_in": shards.output, "out": tmp_path / "shards-described"}


def test_a_verification_stage_hands_on_the_shard_set_it_checked(tmp_path):
    verified = StageResult("shards", tmp_path / "verified" / "abc", "abc", True, 0.0,
                           {"shards": str(tmp_path / "user-shards")}, status="skipped")
    assert steps.shard_set_of(verified).output == tmp_path / "user-shards"
    assert steps.shard_set_of(verified).fingerprint == "abc" and steps.shard_set_of(verified).status == "skipped"
    assert steps.shard_set_of(SHARDS) is SHARDS


# --- what the VLM fine-tunes on ----------------------------------------------------------------------------------

def test_patches_with_some_descriptions_are_enough_to_fine_tune_on(tmp_path):
    """The VLM fine-tunes on the described patches; patches left without a description (warned) do not refuse the
    pipeline before its first stage. Patches without any are refused."""
    import json

    patches = write_patch_folder(tmp_path / "patches", per_class=2)
    cfg = _cfg(tmp_path, f"vlm.pairs={tmp_path / 'no-pairs'}")
    with pytest.raises(UserError, match=r"the patches in .*patches carry no descriptions, and vlm.pairs="):
        steps.require_pairs(cfg, "patches", patches)
    (patches / "descriptions.jsonl").write_text(json.dumps({"file": "UD/UD_000.png", "description": "a UD patch"}))
    steps.require_pairs(cfg, "patches", patches)


def test_an_existing_shard_set_with_descriptions_is_enough_to_fine_tune_on(tmp_path):
    from support.shards import make_shard_set

    described = make_shard_set(tmp_path / "described")  # (support's specs carry descriptions)
    steps.require_pairs(_cfg(tmp_path, f"data.shards={described}", f"vlm.pairs={tmp_path / 'no-pairs'}"), "shards")


def test_shards_that_carry_descriptions_are_what_the_vlm_fine_tunes_on_not_vlm_pairs(tmp_path):
    from support.shards import make_shard_set

    own, other = make_shard_set(tmp_path / "own"), make_shard_set(tmp_path / "other")
    shards = StageResult("shards", own, "fp-own", False, 1.0)
    assert steps.pairs_for(_cfg(tmp_path, f"vlm.pairs={other}"), shards) is shards


def _partly_described(tmp_path):
    """A shard set whose patches carry a description one in three (a descriptions file missing rows)."""
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.config import BuildConfig
    from support.shards import CLASSES, specs_for

    specs = specs_for(write_patch_folder(tmp_path / "partly-src", per_class=6, size=16))
    for i, spec in enumerate(specs):
        spec.description = spec.description if i % 3 == 0 else None
    build_shards(specs, tmp_path / "partly", BuildConfig(max_samples_per_shard=6, val_fraction=0.0, test_fraction=0.0,
                                                         image_format="png", image_size=16), CLASSES, progress=False)
    return tmp_path / "partly"


def test_shards_described_in_part_are_said_with_their_counts_and_the_vlm_pairs_left_unused(tmp_path, caplog):
    """The pipeline's shards with descriptions for 6 of 18 patches took the place of a vlm.pairs set described in
    full without a word: the VLM fine-tuned on 6 pairs. They still do (the describe stage describes the rest), and
    the log says how many and that vlm.pairs is not used."""
    from support.shards import make_shard_set

    partly, full = _partly_described(tmp_path), make_shard_set(tmp_path / "full")
    shards = StageResult("shards", partly, "fp-partly", False, 1.0)
    with caplog.at_level("INFO", logger="mmlnb_dist.pipeline.steps"):
        assert steps.pairs_for(_cfg(tmp_path, f"vlm.pairs={full}"), shards) is shards
    assert re.search(r"only 6 of 18 train patches of .*partly carry a description: the VLM fine-tunes on those 6"
                     r".*vlm\.pairs=.*full/shards \(15 train pairs\) is not used", caplog.text), caplog.text


def test_without_keep_best_the_fine_tune_s_fingerprint_holds_no_keep_best_setting(tmp_path):
    """`vlm.keep_best` is left out of the fingerprint when off, so a fine-tune fingerprinted before the setting
    existed is still up to date; on, it and `eval_every` (which then picks the adapter) are in."""
    off = steps.finetune_settings(_cfg(tmp_path, "vlm.keep_best=false").vlm)
    assert "keep_best" not in off and "eval_every" not in off
    on = steps.finetune_settings(_cfg(tmp_path, "vlm.keep_best=true", "vlm.eval_every=10").vlm)
    assert on["keep_best"] is True and on["eval_every"] == 10


def test_patches_are_built_by_their_classes_even_when_the_synthetic_task_is_multilabel(tmp_path):
    """`data.synth.task=multilabel` is about the synthetic source's pairs CSV; patches given by the user are built
    as class folders or a CSV, so their shards follow `data.classes`."""
    patches = StageResult("patches", tmp_path / "patches", "fp-patches", True, 0.0, status="input")

    def fp(*overrides):
        return steps.plan_shards(_cfg(tmp_path, "data.synth.task=multilabel", *overrides), patches).fingerprint

    assert fp("data.classes=[a,b]") != fp("data.classes=[a,b,c]")


# --- an existing shard set (data.shards), verified once ----------------------------------------------------------

def _verified(tmp_path, shards):
    from mmlnb_dist.pipeline.stages import run_planned

    result = run_planned(steps.plan_verify(_cfg(tmp_path, f"data.shards={shards}")))
    return steps.shard_set_of(result)


def test_a_shard_set_moved_elsewhere_is_read_where_data_shards_now_points(tmp_path):
    """The verification is recorded per manifest digest; a rerun with the set moved (to a local disk, say) skipped
    it and handed the later stages the old path from the record: they read a folder that is gone, not data.shards."""
    import shutil

    from support.shards import make_shard_set

    first = make_shard_set(tmp_path / "a")
    assert _verified(tmp_path, first).output == first
    moved = shutil.move(str(first), str(tmp_path / "local-disk"))
    assert _verified(tmp_path, Path(moved)).output == Path(moved)


def test_a_copy_of_a_verified_shard_set_with_a_broken_shard_is_refused(tmp_path):
    """A copy has the same manifest (the same digest) but its own bytes: a shard cut short in the copy is found,
    not skipped as verified because the original was."""
    import shutil

    from support.shards import make_shard_set

    first = make_shard_set(tmp_path / "a")
    _verified(tmp_path, first)
    copy = Path(shutil.copytree(first, tmp_path / "copy"))
    shard = sorted(copy.rglob("*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(UserError, match=r"data.shards .*copy: \d+ problem\(s\), first: .*\.tar"):
        _verified(tmp_path, copy)
