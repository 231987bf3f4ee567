"""The model card's Config section comes from the run's own record: a run folder moved (or deleted) after
training left the card without its config, because the card read `<run_dir tag>/config.yaml` only; the run logged
that file as an MLflow artifact, which the card now falls back to.

Style of tests/models/test_encoder_licence_registry.py: a real SQLite MLflow store, the fusion recipe's
`register_run`, an export written by the recipe's own `export_model` (tiny encoders, no training)."""
from __future__ import annotations

from pathlib import Path

import torch

METRIC = "best/val/balanced_accuracy"
CLASSES = ["UD", "PD", "D"]
CONFIG_TEXT = "train:\n  lr: 0.000123\n  recipe: fusion\n"


def _export(tmp_path: Path) -> Path:
    from mmlnb_dist.models.config import ImageEncoderConfig, TextEncoderConfig
    from mmlnb_dist.recipes.fusion.config import FusionModelConfig
    from mmlnb_dist.recipes.fusion.export import export_model
    from mmlnb_dist.recipes.fusion.model import build_classifier

    torch.manual_seed(0)
    cfg = FusionModelConfig(image_encoder=ImageEncoderConfig(name="tiny", pretrained=False),
                            text_encoder=TextEncoderConfig(name="tiny-bert"))
    model = build_classifier(cfg, len(CLASSES)).eval()
    return export_model(model.state_dict(), model, cfg, CLASSES, tmp_path / "kept" / "export", image_size=32)


def _card_of(tmp_path: Path, run_dir: Path, name: str) -> str:
    import mlflow

    from mmlnb_dist.recipes.fusion.pyfunc_model import register_run

    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    exp = client.create_experiment(name, artifact_location=(tmp_path / "artifacts").resolve().as_uri())
    run = client.create_run(exp, tags={"run_dir": str(run_dir)})
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(CONFIG_TEXT)
    client.log_artifact(run.info.run_id, str(run_dir / "config.yaml"))  # as the MLflow logger does at start
    client.log_metric(run.info.run_id, METRIC, 0.5)
    client.set_terminated(run.info.run_id)
    (run_dir / "config.yaml").rename(tmp_path / f"moved-{name}.yaml")  # the run folder moved away since
    result = register_run(run.info.run_id, name, alias=None, tracking_uri=uri, metric=METRIC, mode="max",
                          model_dir=_export(tmp_path))
    location = client.get_model_version_download_uri(name, result.version)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/artifacts/MODEL_CARD.md",
                                                    dst_path=str(tmp_path / f"card-{name}"),
                                                    tracking_uri=uri)).read_text()


def test_a_moved_run_folder_still_gives_the_card_its_config(tmp_path):
    card = _card_of(tmp_path, tmp_path / "was-here", "nb-moved")
    assert "## Config" in card
    config = card.split("## Config", 1)[1]
    assert "lr: 0.000123" in config and "recipe: fusion" in config


class _Client:
    """Records artifact downloads; holds `config.yaml` as an artifact when `text` is given."""

    def __init__(self, text=None):
        self.text, self.asked = text, []

    def download_artifacts(self, run_id, path, dst):
        self.asked.append((run_id, path))
        if self.text is None:
            raise OSError(f"no artifact {path}")
        out = Path(dst) / path
        out.write_text(self.text)
        return str(out)


def _run(run_dir):
    from types import SimpleNamespace

    return SimpleNamespace(info=SimpleNamespace(run_id="r1"), data=SimpleNamespace(tags={"run_dir": str(run_dir)}))


def test_the_config_is_read_from_the_run_folder_first_then_from_the_artifact(tmp_path):
    from mmlnb_dist.core.tracking.card import run_config_text

    (tmp_path / "config.yaml").write_text("folder: 1\n")
    client = _Client("artifact: 1\n")
    assert run_config_text(client, _run(tmp_path)) == "folder: 1\n" and client.asked == []
    assert run_config_text(client, _run(tmp_path / "gone")) == "artifact: 1\n"
    assert client.asked == [("r1", "config.yaml")]
    assert run_config_text(_Client(None), _run(tmp_path / "gone")) is None  # neither: a card without Config
