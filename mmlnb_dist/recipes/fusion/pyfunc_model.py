"""The MLflow pyfunc wrapper of a trained classifier (what `models:/mmlnb-nb@champion` loads).

Input: a pandas DataFrame with columns
  - `image` (str): a file path, or the image bytes base64-encoded (what `mlflow models serve` receives);
  - `description` (str, optional): the text branch's input ("" when none: the image branch still works);
  - `key`, `slide_id` (str, optional): carried through to the output.
Output: a DataFrame with `key`, `slide_id`, `label` (predicted subtype), `prob_<class>` per class, `alpha`
(PRMF text weight, NaN for fusions without one) and `description`.

The model folder holds the fusion recipe's export directory (weights, class list, text encoder and
tokenizer files, config) as the `export` artifact and a model card; `load_context` rebuilds the network
through the fusion recipe's loader, so serving and training share one code path. The model is logged as code
(`pyfunc_code.py`, MLflow "models from code"): the model folder holds no pickle. `model_package` and
`register_export` hand all of it to the registry (`core.tracking.registry`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from ...core.tracking.registry import (EXPORT_FOLDER, ModelPackage, RegisterResult, register_model, register_trained,
                                       run_folder)
from ...core.tracking.signature import signature_requiring
from .config import LOWER_IS_BETTER
from ...data.images import BadRequest, example_image_b64, read_image, read_request

if TYPE_CHECKING:
    from ...config import Config


class MMLNBClassifier(mlflow.pyfunc.PythonModel):
    """Dual-branch (image + description) subtype classifier as an MLflow pyfunc model."""

    def load_context(self, context) -> None:
        self.predictor = load_predictor(Path(context.artifacts["export"]))

    # The hint is what MLflow reads (a DataFrame hint: no schema inference, no validation); without one it
    # warns on every import of this class, inside a `catch_warnings` that no filter of ours can reach.
    def predict(self, context, model_input: pd.DataFrame, params: Optional[Dict[str, Any]] = None):
        batch_size = int((params or {}).get("batch_size", 32))
        if batch_size < 1:  # (0: a range() traceback; below: no batch run, and a frame of unequal columns)
            raise MlflowException(f"params batch_size must be at least 1 (got {batch_size})",
                                  error_code=INVALID_PARAMETER_VALUE)
        try:
            req = read_request(model_input, self.predictor.transform.image_size,
                               require_text=getattr(self.predictor.model, "text_encoder", None) is not None)
        except BadRequest as err:  # served: an HTTP 400 with this message (a ValueError: "an unexpected error")
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        return predictions_frame(self.predictor, req["images"], req["texts"], req["keys"], req["slide_ids"],
                                 batch_size)


def predictions_frame(predictor, images: Sequence[Any], texts: Sequence[str], keys: Sequence[Any],
                      slide_ids: Sequence[Any], batch_size: int = 32):
    """Run `predictor` in batches and lay the results out as the output DataFrame."""
    import pandas as pd

    probs, alphas = [], []
    for i in range(0, len(images), batch_size):
        out = predictor.predict(list(images[i:i + batch_size]), list(texts[i:i + batch_size]))
        probs.append(np.asarray(out["probs"], dtype=np.float64))
        a = out.get("alpha")
        alphas.append(np.full(len(probs[-1]), np.nan) if a is None else np.asarray(a, np.float64).reshape(-1))
    classes = list(predictor.classes)
    p = np.concatenate(probs) if probs else np.zeros((0, len(classes)))
    a = np.concatenate(alphas) if alphas else np.zeros(0)
    frame = {
        "key": [None if k is None else str(k) for k in keys],
        "slide_id": [None if s is None else str(s) for s in slide_ids],
        "label": [classes[i] for i in p.argmax(axis=1)] if len(p) else [],
    }
    for c, name in enumerate(classes):
        frame[f"prob_{name}"] = p[:, c]
    frame["alpha"] = a
    frame["description"] = list(texts)
    return pd.DataFrame(frame)


class ExportPredictor:
    """images + descriptions -> class probabilities and alpha, for one exported classifier (CPU or GPU)."""

    def __init__(self, model, classes: Sequence[str], image_size: int, mean: Sequence[float], std: Sequence[float],
                 device: Optional[str] = None):
        import torch

        from ...data.images import ImageTransform

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.classes = list(classes)
        self.transform = ImageTransform(image_size, augment=False, mean=mean, std=std)

    def predict(self, images: Sequence[Any], texts: Sequence[str]) -> Dict[str, Any]:
        import torch

        kwargs: Dict[str, Any] = {}
        if getattr(self.model, "image_encoder", None) is not None:
            kwargs["pixel_values"] = torch.stack([self.transform(img) for img in images]).to(self.device)
        if getattr(self.model, "text_encoder", None) is not None:
            tok = self.model.text_encoder.tokenize([t or "" for t in texts])
            kwargs.update({k: v.to(self.device) for k, v in tok.items()})
        with torch.no_grad():
            out = self.model(**kwargs)
        probs = torch.softmax(out["logits"].float(), dim=-1).cpu().numpy()
        alpha = out.get("alpha")
        if alpha is not None:
            alpha = torch.as_tensor(alpha).float().reshape(-1).expand(len(probs)).cpu().numpy()
        return {"probs": probs, "alpha": alpha}


def load_predictor(export_dir: Path, device: Optional[str] = None) -> ExportPredictor:
    """Rebuild the classifier from the fusion recipe's export folder through its own loader."""
    from .export import load_exported_model, read_export_config

    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise FileNotFoundError(f"export folder not found: {export_dir}")
    model, _tokenize, classes = load_exported_model(export_dir)
    meta, _ = read_export_config(export_dir)
    pre = meta["preprocessing"]
    return ExportPredictor(model, classes, int(meta.get("image_size", 224)), pre["image_mean"], pre["image_std"],
                           device)


USAGE = """```python
import mlflow, pandas as pd
m = mlflow.pyfunc.load_model('models:/<name>@<alias>')
m.predict(pd.DataFrame({'image': ['patch.png'], 'description': ['...']}))
```"""


def image_encoder_record(meta: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Which image encoder an export was trained from, its starting weights' digest and their licence: what the
    export recorded (`image_encoder_provenance`), else what the encoder registry knows by name."""
    from ...models.encoders import image_encoder_licence

    name = meta.get("image_encoder")
    if name is None:
        return None
    record = {"name": name, "weights_digest": "not recorded in the export", "licence": image_encoder_licence(name),
              "source": name}
    record.update(meta.get("image_encoder_provenance") or {})
    return record


def _encoder_card_and_tags(record: Optional[Dict[str, Any]]):
    """Model-card section and version tags for the image encoder, so its licence travels with the model."""
    if record is None:
        return {}, {}
    tags = {"image_encoder": str(record["name"]), "image_encoder.source": str(record["source"]),
            "image_encoder.weights_digest": str(record["weights_digest"]),
            "image_encoder.licence": str(record["licence"])}
    card = (f"- name: `{record['name']}` (from `{record['source']}`)\n"
            f"- starting weights digest: `{record['weights_digest']}`\n"
            f"- licence: {record['licence']}. This model is derived from these weights and inherits their "
            f"licence{' (not for commercial use)' if record.get('commercial_use') is False else ''}.")
    return {"Image encoder": card}, tags


def model_package(run, export_dir: Optional[Path] = None) -> ModelPackage:
    """What the registry logs for a fusion run: the pyfunc wrapper around its export (default
    `<run folder>/export`), with a signature and an example from a real prediction (which also checks the
    export works before anything is registered)."""
    import json

    import pandas as pd

    from ...core.tracking.registry import RegistryError

    export_dir = Path(export_dir) if export_dir is not None else run_folder(run) / EXPORT_FOLDER
    if not export_dir.is_dir():
        raise RegistryError(f"export folder {export_dir} of run {run.info.run_id} does not exist "
                            f"(was the run trained to the end? If its folder moved, give it to register --export)")
    predictor = load_predictor(export_dir)
    classes = list(predictor.classes)
    example = pd.DataFrame({"image": [example_image_b64(32)], "description": ["Sheets of small round blue cells."],
                            "key": ["example"], "slide_id": [""]})
    image = read_image(example["image"][0], predictor.transform.image_size)  # decoded as training decodes it
    out = predictions_frame(predictor, [image], list(example["description"]), ["example"], [""])
    from .export import read_export_config

    export_config = read_export_config(export_dir)[0]
    encoder = image_encoder_record(export_config)
    encoder_card, encoder_tags = _encoder_card_and_tags(encoder)
    package_root = Path(__file__).resolve().parents[2]  # the mmlnb_dist package: the pyfunc imports it
    return ModelPackage(
        python_model=str(Path(__file__).with_name("pyfunc_code.py")), artifacts={"export": str(export_dir)},
        signature=signature_requiring(example, out, {"batch_size": 32}), input_example=example,
        title="mmlnb-nb classifier",
        card_sections={"Classes": ", ".join(classes), **encoder_card, "Use": USAGE},
        metadata={"classes": classes, "image_encoder": encoder,
                  "reads_text": getattr(predictor.model, "text_encoder", None) is not None,
                  **{k: export_config[k] for k in ("descriptions_written_by",) if k in export_config}},
        version_tags={"classes": json.dumps(classes), **encoder_tags},
        code_paths=[str(package_root)],
        # the encoder registries rebuild timm / open_clip architectures when the export names one
        requirements=["timm", "open_clip_torch"])


def register_run(run_id: str, name: str, *, alias: Optional[str], tracking_uri: Optional[str], metric: str,
                 mode: str, model_dir: Optional[Path] = None) -> RegisterResult:
    """Register a fusion run's export (`model_dir`, default `<run folder>/export`): the recipe-table entry point
    that `mmlnb-dist register` and a search's best trial use."""
    return register_model(run_id, name, lambda run: model_package(run, model_dir), alias=alias,
                          tracking_uri=tracking_uri, metric=metric, mode=mode)


def register_export(cfg: "Config", run_id: str, export_dir: Path) -> RegisterResult:
    """Register a finished run's export under `tracking.register_name` (the end-of-training hook, rank 0).

    The metric defaults to `best/val/<train.best_metric>` (the exported best checkpoint's validation value),
    lower-better for a loss."""
    return register_trained(cfg.tracking, cfg.run.output_dir, cfg.train.best_metric, LOWER_IS_BETTER, run_id,
                            lambda run: model_package(run, export_dir))
