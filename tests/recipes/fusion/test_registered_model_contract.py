"""What the registered fusion model promises its users: the documented call (`image` + `description` only) works,
the registered weights are the ones the run trained, and its card shows the exported checkpoint's metrics."""
from __future__ import annotations

import pandas as pd
import pytest

from mmlnb_dist.data.images import example_image_b64

from support.fusion import registered_model

NAME = "nb-contract"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return registered_model(tmp_path_factory.mktemp("contract"), NAME)


def test_the_documented_call_with_only_image_and_description_predicts(trained):
    """`key` and `slide_id` are carried through when given; the signature used to make them required, so the
    model card's snippet and the serving example failed with "Model is missing inputs ['key', ...]"."""
    import mlflow

    mlflow.set_tracking_uri(trained["uri"])
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    required = [c.name for c in model.metadata.get_input_schema().inputs if c.required]
    assert required == ["image"]
    out = model.predict(pd.DataFrame({"image": [example_image_b64(32)],
                                      "description": ["Sheets of small round blue cells."]}))
    assert len(out) == 1 and out["label"][0]


def test_register_refuses_an_export_changed_since_training_naming_the_file(trained, capsys):
    """`cp runs/b/export/model.safetensors runs/a/export/; mmlnb-dist register --run runs/a` used to register b's
    weights under a's metrics, lineage and model card without a word: the export's digest is now recorded at
    training (the run folder's `export.json`, the run's tag) and a registration of other files is refused."""
    from mmlnb_dist.cli import main

    run_dir = trained["root"] / "runs" / NAME
    weights = run_dir / "export" / "model.safetensors"
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-4] + bytes(4))  # another run's weights, as far as the digest can tell
        capsys.readouterr()
        assert main(["register", "--run", str(run_dir), "--name", "nb-changed"]) == 2
        err = capsys.readouterr().err
        assert "model.safetensors" in err and "changed since" in err
    finally:
        weights.write_bytes(original)
    assert main(["register", "--run", str(run_dir), "--name", "nb-changed"]) == 0  # the trained files register


def test_predict_loads_models_name_latest_as_the_highest_version(trained):
    """MLflow reads `models:/NAME/latest` as the highest version; `predict --model` used to refuse it."""
    from mmlnb_dist.predict.model import load_model

    model = load_model(f"models:/{NAME}/latest", trained["uri"])
    out = model.predict(pd.DataFrame({"image": [example_image_b64(32)], "description": ["Small round blue cells."]}))
    assert len(out) == 1
