"""A registered fusion model carries its image encoder's name, starting weights' digest and licence (issue 16,
item 3): version tags and a model-card line, so that a non-commercial encoder's licence travels with the model.

Style of tests/core/test_registry.py: a real SQLite MLflow store and the fusion recipe's `register_run`; the
export is written by the recipe's own `export_model` from a tiny UNI-family classifier (no training needed)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")

METRIC = "best/val/balanced_accuracy"
CLASSES = ["UD", "PD", "D"]


def _export(tmp_path: Path, with_provenance: bool) -> tuple[Path, dict]:
    """A fusion export whose image encoder is UNI-tiny started from a local weights file (as training would)."""
    from safetensors.torch import save_file

    from mmlnb_dist.models.config import ImageEncoderConfig, TextEncoderConfig
    from mmlnb_dist.models.encoders import IMAGE_ENCODERS, encoder_provenance
    from mmlnb_dist.recipes.fusion.config import FusionModelConfig
    from mmlnb_dist.recipes.fusion.export import export_model
    from mmlnb_dist.recipes.fusion.model import build_classifier

    torch.manual_seed(0)
    weights = tmp_path / "uni-start.safetensors"
    save_file({k: v.contiguous() for k, v in IMAGE_ENCODERS["uni-tiny"](False).body.state_dict().items()},
              str(weights))
    cfg = FusionModelConfig(image_encoder=ImageEncoderConfig(name="uni-tiny", pretrained=False,
                                                             weights_path=str(weights)),
                            text_encoder=TextEncoderConfig(name="tiny-bert"))
    model = build_classifier(cfg, len(CLASSES)).eval()
    provenance = encoder_provenance(model.image_encoder)
    export_dir = export_model(model.state_dict(), model, cfg, CLASSES, tmp_path / "export", image_size=224,
                              extra={"image_encoder_provenance": provenance})
    if not with_provenance:  # an export written before the field existed
        meta_path = export_dir / "model_config.json"
        meta = json.loads(meta_path.read_text())
        meta.pop("image_encoder_provenance")
        meta_path.write_text(json.dumps(meta))
    return export_dir, provenance


def _register(tmp_path: Path, export_dir: Path, name: str):
    import mlflow

    from mmlnb_dist.recipes.fusion.pyfunc_model import register_run

    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    client = mlflow.MlflowClient(uri, registry_uri=uri)  # not the process-wide registry another test may have set
    # an artifact location of its own: without one, MLflow puts the logged model in ./mlruns (the checkout)
    exp = client.create_experiment("licence", artifact_location=(tmp_path / "artifacts").resolve().as_uri())
    run = client.create_run(exp, tags={"run_dir": str(tmp_path)})
    client.log_metric(run.info.run_id, "val/balanced_accuracy", 0.5)
    client.set_terminated(run.info.run_id)
    result = register_run(run.info.run_id, name, alias="champion", tracking_uri=uri, metric=METRIC, mode="max",
                          model_dir=export_dir)
    version = client.get_model_version(name, result.version)
    location = client.get_model_version_download_uri(name, result.version)  # no global registry URI needed
    card = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/artifacts/MODEL_CARD.md",
                                                    dst_path=str(tmp_path / f"card-{name}"),
                                                    tracking_uri=uri)).read_text()
    return version, card


def test_registered_model_carries_encoder_digest_and_non_commercial_licence(tmp_path):
    export_dir, provenance = _export(tmp_path, with_provenance=True)
    assert provenance["licence"] == "CC-BY-NC-ND-4.0" and provenance["commercial_use"] is False
    assert len(provenance["weights_digest"]) == 16  # the starting weights were fingerprinted
    version, card = _register(tmp_path, export_dir, "nb-licence")
    assert version.tags["image_encoder"] == "uni-tiny"
    assert version.tags["image_encoder.source"] == "hf-hub:MahmoodLab/uni"
    assert version.tags["image_encoder.licence"] == "CC-BY-NC-ND-4.0"
    assert version.tags["image_encoder.weights_digest"] == provenance["weights_digest"]
    for text in (card, version.description):
        assert "## Image encoder" in text
        assert f"starting weights digest: `{provenance['weights_digest']}`" in text
        assert "licence: CC-BY-NC-ND-4.0. This model is derived from these weights and inherits their licence " \
               "(not for commercial use)." in text


def test_an_export_without_provenance_still_names_its_encoder_licence(tmp_path):
    """Exports written before the provenance field: the licence comes from the registry by name (the package
    is what `register_model` logs; its tags and card sections are checked without a store)."""
    from mmlnb_dist.recipes.fusion.pyfunc_model import model_package

    export_dir, _ = _export(tmp_path, with_provenance=False)
    package = model_package(None, export_dir)
    assert package.version_tags["image_encoder.licence"] == "CC-BY-NC-ND-4.0"
    assert package.version_tags["image_encoder.weights_digest"] == "not recorded in the export"
    assert "licence: CC-BY-NC-ND-4.0" in package.card_sections["Image encoder"]
