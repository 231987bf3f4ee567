"""`ablate` on the fusion recipe (the paper's Table 2) on a small synthetic set: each row trains what it claims,
read from what the recipe recorded it trained (`metrics.json["trained"]`: the engine optimizer's parameters by
model part, lambda and alpha per epoch, who wrote the descriptions); the VLM stages run once for the study and
their descriptions and the frozen-feature caches are reused (counted); the table holds every row, full first."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.core.errors import ConfigError

from support.fusion import make_shards, tiny_config

ROWS = ["no_text", "full", "no_fine_tune", "no_curriculum", "fixed_alpha"]
PHASES = ("fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 1}, "
          "{start_epoch: 2, train_image_encoder: false, train_text_encoder: false}]")


def study_config(shards: Path, root: Path):
    return tiny_config(shards, root / "runs", "table2", [
        f"vlm.pairs={shards}", f"vlm.cache_dir={root / 'tiny'}", "vlm.tiny_vision=random", "vlm.max_steps=4",
        "vlm.generation.max_new_tokens=6", "train.epochs=3", "train.global_batch_size=16",
        "fusion.curriculum.ramp_start=1", "fusion.curriculum.ramp_end=2", "fusion.curriculum.step_every=1", PHASES,
    ])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from mmlnb_dist.studies import run_study

    root = tmp_path_factory.mktemp("ablate-fusion")
    shards = make_shards(root, n=72, size=64, test_fraction=0.2)
    cfg = study_config(shards, root)
    first = run_study(cfg, rows=ROWS, seeds=[0])
    first.stored = json.loads((first.study_dir / "table.json").read_text())  # the next call writes its own table
    # a second call with one more row: the finished rows and both description sets are found up to date
    second = run_study(cfg, rows=["full", "concat"], seeds=[0])
    return first, second


def trained(study, row):
    (record,) = study.table[row]["trained"]
    return record


@pytest.mark.slow
def test_the_table_has_every_row_with_the_full_model_first(study):
    first, _ = study
    assert list(first.table) == ["full", "no_text", "no_fine_tune", "no_curriculum", "fixed_alpha"]
    assert first.split == "test"
    lines = [line for line in first.markdown.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == list(first.table)
    stored = first.stored
    for row, entry in first.table.items():
        metrics = json.loads((Path(entry["runs"][0]) / "metrics.json").read_text())
        assert entry["balanced_accuracy"] == [pytest.approx(metrics["test/balanced_accuracy"])]
        assert stored["rows"][row]["balanced_accuracy_mean"] == pytest.approx(metrics["test/balanced_accuracy"])


@pytest.mark.slow
def test_no_text_has_no_text_encoder_parameters_in_its_optimizer(study):
    first, _ = study
    full, no_text = trained(first, "full")["optimizer"], trained(first, "no_text")["optimizer"]
    assert full["parts"]["text_encoder"] > 0 and "text_encoder" in full["groups"]
    assert "text_encoder" not in no_text["parts"] and "text_encoder" not in no_text["groups"]
    # the image encoder it does train is the same size as the full model's
    assert no_text["parts"]["image_encoder"] == full["parts"]["image_encoder"] > 0


@pytest.mark.slow
def test_fixed_alpha_never_changes_and_prmf_alpha_does(study):
    first, _ = study
    fixed, full = trained(first, "fixed_alpha"), trained(first, "full")
    assert fixed["epochs"] == [0, 1, 2]
    assert fixed["alpha_means"] == [0.5, 0.5, 0.5] and fixed["val_alpha_means"] == [0.5, 0.5, 0.5]
    assert "confidence" not in json.dumps(fixed["optimizer"])  # no confidence network to learn alpha
    assert any(a != 0.5 for a in full["alpha_means"] + full["val_alpha_means"])


@pytest.mark.slow
def test_no_curriculum_has_lambda_one_at_every_epoch(study):
    first, _ = study
    assert trained(first, "no_curriculum")["lambdas"] == [1.0, 1.0, 1.0]
    assert trained(first, "full")["lambdas"] == [0.3, 0.3, 1.0]  # the curriculum the full row does use


@pytest.mark.slow
def test_no_fine_tune_reads_descriptions_of_the_base_vlm_without_adapter(study):
    first, _ = study
    base, tuned = trained(first, "no_fine_tune")["descriptions"], trained(first, "full")["descriptions"]
    assert base["describe"]["adapter"] is None and base["describe"]["adapter_sha256"] is None
    assert tuned["describe"]["adapter"] and tuned["describe"]["adapter_sha256"]
    assert base["describe"]["model"] == tuned["describe"]["model"]
    assert base["shards"] != tuned["shards"] and base["manifest_sha256"] != tuned["manifest_sha256"]
    sets = first.cache["description_sets"]
    assert sets["base_vlm"]["fingerprint"] != sets["fine_tuned_vlm"]["fingerprint"]
    assert base["shards"] == sets["base_vlm"]["shards"] and tuned["shards"] == sets["fine_tuned_vlm"]["shards"]
    for row in ("no_text", "no_curriculum", "fixed_alpha"):  # every other row reads the fine-tuned set
        assert trained(first, row)["descriptions"]["shards"] == tuned["shards"]


@pytest.mark.slow
def test_shared_artifacts_are_computed_once_and_their_reuse_is_counted(study):
    first, second = study
    c = first.cache
    assert (c["runs_trained"], c["runs_up_to_date"]) == (5, 0)
    assert c["vlm_finetuned"] is True
    # two description sets generated (fine-tuned, base); 4 runs read the fine-tuned set: 3 reused it
    assert (c["description_misses"], c["description_hits"]) == (2, 3)
    # the phase-0 text encoder (frozen, same seed, same descriptions) is the same for full, no_curriculum and
    # fixed_alpha: its features are computed by full and found in the study cache by the other two
    per_run = {row: json.loads((Path(e["runs"][0]) / "metrics.json").read_text()) for row, e in first.table.items()}
    assert c["feature_hits"] == sum(m["cache/hits"] for m in per_run.values())
    assert c["feature_misses"] == sum(m["cache/misses"] for m in per_run.values())
    assert per_run["no_curriculum"]["cache/hits"] >= 1 and per_run["fixed_alpha"]["cache/hits"] >= 1
    stored = first.stored["cache"]
    assert stored["description_hits"] == 3 and stored["feature_hits"] == c["feature_hits"]
    assert "3 run(s)" in first.markdown and f"{c['feature_hits']} cache hits" in first.markdown

    s = second.cache
    assert second.skipped == ["full-seed0"]
    assert (s["runs_trained"], s["vlm_finetuned"], s["description_misses"], s["description_hits"]) == (1, False, 0, 1)
    assert per_run["full"]["trained"]["descriptions"]["shards"] == trained(second, "concat")["descriptions"]["shards"]


def test_reference_text_mode_refuses_the_row_that_needs_the_base_vlm(tmp_path):
    from mmlnb_dist.studies import description_sources
    from support.fusion import CPU_DEMO
    from mmlnb_dist.config import load_config

    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}"])
    assert set(description_sources(cfg, ["full", "concat"], "shards").values()) == {"shards"}
    assert description_sources(cfg, ["full", "no_fine_tune"], None) == {"full": "fine_tuned_vlm",
                                                                       "no_fine_tune": "base_vlm"}
    with pytest.raises(ConfigError, match="row\\(s\\) no_fine_tune"):
        description_sources(cfg, ["full", "no_fine_tune"], "shards")


def test_without_vlm_fine_tuning_every_row_reads_the_base_vlm_and_no_row_repeats_the_full_model(tmp_path):
    """`vlm.finetune=false` (a user with no reference descriptions to fine-tune on, as `pipeline` allows) was
    ignored by `ablate`: every row still fine-tuned the VLM (and failed on shards without descriptions, its error
    telling the user to set the vlm.finetune=false they had set), and `no_fine_tune` was the only row on base text."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.studies import choose_rows, description_sources, run_study, study_rows
    from support.fusion import CPU_DEMO

    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}", "vlm.finetune=false"])
    available, _ = study_rows(cfg)
    chosen = choose_rows(cfg, available, None, None)
    assert chosen == [r for r in available if r != "no_fine_tune"] and chosen[0] == "full"
    assert set(description_sources(cfg, chosen, None).values()) == {"base_vlm"}
    assert set(description_sources(cfg, chosen, "shards").values()) == {"shards"}  # the shards' text as before
    with pytest.raises(ConfigError, match="vlm.finetune=false every row reads the base VLM's descriptions, so "
                                          "no_fine_tune would repeat the full model"):
        run_study(cfg, rows=["full", "no_fine_tune"], seeds=[0])
    assert not (tmp_path / cfg.run.name).exists()  # refused before any work
    fine_tuned = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}"])
    assert choose_rows(fine_tuned, available, None, None) == list(available)


@pytest.mark.slow
def test_a_study_without_vlm_fine_tuning_describes_with_the_base_vlm_once(tmp_path):
    from mmlnb_dist.studies import run_study

    shards = make_shards(tmp_path, n=36, size=32, test_fraction=0.25)
    cfg = tiny_config(shards, tmp_path / "runs", "nofinetune", [
        f"vlm.cache_dir={tmp_path / 'tiny'}", "vlm.tiny_vision=random", "vlm.generation.max_new_tokens=6",
        "vlm.finetune=false", "vlm.pairs=/nonexistent", "data.loader.image_size=32", "train.epochs=1"])
    study = run_study(cfg, rows=["full", "no_text"], seeds=[0])
    assert study.cache["vlm_finetuned"] is None and list(study.cache["description_sets"]) == ["base_vlm"]
    assert (study.cache["description_misses"], study.cache["description_hits"]) == (1, 1)
    for row in ("full", "no_text"):
        assert study.table[row]["descriptions"] == "base_vlm"
        assert trained(study, row)["descriptions"]["describe"]["adapter"] is None


def test_the_console_shows_the_study_table_and_the_study_log_keeps_each_runs_tables(tmp_path, capsys):
    """A study of R rows x S seeds printed 2 full metric tables per run (about 25 lines each) before its own
    table. The console now has the study's lines and table; `<study>/study.log` keeps every run's tables."""
    from mmlnb_dist.cli import main
    from mmlnb_dist.config import save_config

    shards = make_shards(tmp_path, n=36, size=32, test_fraction=0.25)
    cfg = tiny_config(shards, tmp_path / "runs", "quiet", ["data.loader.image_size=32", "train.epochs=1"])
    config = save_config(cfg, tmp_path / "study.yaml")
    assert main(["ablate", "--config", str(config), "--rows", "full,no_text", "--descriptions", "shards"]) == 0
    out, err = capsys.readouterr()
    assert "| full |" in out and "| no_text |" in out
    assert "split, best checkpoint" not in err and "confusion matrix" not in err, err
    assert "row no_text" in err  # the study's own progress stays
    assert (out + err).count("runs: 2 trained, 0 up to date") == 1, out + err  # once, under the table
    log = (tmp_path / "runs" / "quiet-study" / "study.log").read_text()
    assert log.count("test split, best checkpoint") == 2 and log.count("val split, best checkpoint") == 2, log
    assert f"log: {tmp_path / 'runs' / 'quiet-study' / 'study.log'}" in out
