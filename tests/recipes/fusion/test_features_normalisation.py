"""The fusion recipe normalises images with its image encoder's own mean/std (not always ImageNet's), and its
export records the encoder's provenance (name, weights digest, licence) and that normalisation."""
from __future__ import annotations

import json

import pytest
import torch

CLASSES = ["UD", "PD", "D"]
H_OPTIMUS_MEAN = [0.707223, 0.578729, 0.703617]  # the H-optimus-0 model card's values, typed in by hand
H_OPTIMUS_STD = [0.211883, 0.230117, 0.177517]


@pytest.mark.parametrize("name, mean", [("h-optimus-0-tiny", H_OPTIMUS_MEAN),
                                         ("plip-tiny", [0.48145466, 0.4578275, 0.40821073]),
                                         ("tiny", [0.485, 0.456, 0.406])])
def test_preprocess_uses_the_encoders_own_mean_and_std(name, mean):
    from mmlnb_dist.recipes.fusion.steps import preprocess_for

    pre = preprocess_for(CLASSES, 16, augment=False, image_encoder=name)
    white = torch.full((1, 16, 16, 3), 255, dtype=torch.uint8)
    got = pre.finalize({"image": white})["image"][0, :, 0, 0]
    from mmlnb_dist.models import image_normalisation

    std = image_normalisation(name)["std"]
    expected = torch.tensor([(1 - m) / s for m, s in zip(mean, std)])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_export_records_the_encoders_normalisation_and_provenance(tmp_path):
    from mmlnb_dist.core.engine import seed_everything
    from mmlnb_dist.recipes.fusion.config import FusionModelConfig
    from mmlnb_dist.recipes.fusion.export import export_model, load_exported_model
    from mmlnb_dist.recipes.fusion.model import build_classifier

    cfg = FusionModelConfig.model_validate({"image_encoder": {"name": "h-optimus-0-tiny", "pretrained": False},
                                            "text_encoder": {"name": "tiny-bert", "pooling": "mean",
                                                             "max_length": 16}, "mode": "image_only"})
    seed_everything(0)
    model = build_classifier(cfg, len(CLASSES))
    export_model(model.state_dict(), model, cfg, CLASSES, tmp_path / "export", image_size=224)
    meta = json.loads((tmp_path / "export" / "model_config.json").read_text())
    assert meta["preprocessing"]["image_mean"] == pytest.approx(H_OPTIMUS_MEAN)
    assert meta["preprocessing"]["image_std"] == pytest.approx(H_OPTIMUS_STD)
    prov = meta["image_encoder_provenance"]
    assert prov["name"] == "h-optimus-0-tiny" and prov["licence"] == "Apache-2.0" and prov["gated"] is True
    assert prov["source"] == "hf-hub:bioptimus/H-optimus-0"
    assert prov["weights_digest"] == "random initialisation"
    load_exported_model(tmp_path / "export")  # still loads
