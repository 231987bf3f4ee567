"""`predict --threshold T` with a registered zero-shot CLIP model: its scores are logit_scale x cosine, whose
sigmoids are all about 1, so every label passed any threshold. The served model refuses it; `predict` refuses it
before the first image is predicted (from the model's metadata), naming --top-k, instead of failing mid-run."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.predict import PredictError, predict_to_file
from mmlnb_dist.predict import run as predict_run
from support.predict_stand_in import StandIn

META = {"task": "multilabel", "classes": ["fat", "necrosis"], "top_k": 1, "reads_text": False}


@pytest.mark.parametrize("zero_shot", [True, False])
def test_a_threshold_on_a_zero_shot_model_is_refused_before_any_image(tmp_path, monkeypatch, zero_shot):
    model = StandIn({**META, "zero_shot": zero_shot})
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: model)
    image = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    if zero_shot:
        with pytest.raises(PredictError, match=r"--threshold .*zero-shot.*--top-k"):
            predict_to_file("models:/zs@champion", [image], tmp_path / "p.csv", threshold=0.5)
        assert model.calls == 0 and not (tmp_path / "p.csv").exists()
    else:  # a trained head's sigmoids are probabilities: the threshold goes to the model
        try:
            predict_to_file("models:/m@champion", [image], tmp_path / "p.csv", threshold=0.5)
        except PredictError as err:
            assert "zero-shot" not in str(err)
        assert model.calls == 1


@pytest.mark.parametrize("fusion", ["zero_shot", "concat"])
def test_the_registered_metadata_says_whether_the_model_is_zero_shot(tmp_path, fusion):
    """What `predict` reads: `zero_shot` in the metadata `model_package` registers for an export."""
    import torch

    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.clip.export import export_model
    from mmlnb_dist.recipes.clip.model import build_model
    from mmlnb_dist.recipes.clip.pyfunc_model import model_package
    from support.clip import CLIP_PROFILE

    cfg = load_config(CLIP_PROFILE, [f"clip.model.fusion={fusion}", "clip.model.towers.tiny.layers=1",
                                     "clip.model.towers.unfreeze_blocks=1"]).clip.model
    torch.manual_seed(0)
    model = build_model(cfg, 2, 32, classes=META["classes"]).eval()
    export_model(dict(model.state_dict()), model, cfg, META["classes"], tmp_path / "export", image_size=32,
                 top_k=1, extra={})
    package = model_package(None, tmp_path / "export")
    assert package.metadata["zero_shot"] is (fusion == "zero_shot")
    # the model card offers a threshold only where one is accepted
    assert ("'threshold'" in package.card_sections["Top-k"]) is (fusion != "zero_shot"), package.card_sections
