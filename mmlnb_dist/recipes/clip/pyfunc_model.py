"""The MLflow pyfunc wrapper of a trained CLIP multi-label classifier (what `models:/<name>@champion` loads).

Input: a pandas DataFrame with columns
  - `image` (str): a file path, or the image bytes base64-encoded (what `mlflow models serve` receives);
  - `description` (str, optional): the caption / report the text tower reads ("" when none);
  - `key`, `slide_id` (str, optional): carried through to the output.
Params (optional): `batch_size`; `top_k` (> 0: predict the k most probable labels; 0: the model's own k) or
`threshold` (in (0, 1]: predict every label with probability >= threshold, instead of the top k; refused for a
zero-shot model, whose scores are not probabilities); not both.
Output: a DataFrame with `key`, `slide_id`, `prob_<label>` per label (sigmoid of the logits: independent
probabilities, not a distribution), `labels` (the predicted label set, `|`-joined, most probable first),
`label_probs` (JSON [[label, probability], ...] of that set), `selection` (`top-3`, `p>=0.5`) and `description`.

The model folder holds the recipe's export folder (safetensors + JSON + tokenizer files) as the `export` artifact
and a model card; `load_context` rebuilds the network with `export.load_exported_model`, so serving and training
share one code path. The model is logged as code (`pyfunc_code.py`, MLflow "models from code"): nothing pickled.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from ...core.tracking.registry import (EXPORT_FOLDER, ModelPackage, RegisterResult, alias_selection, register_model,
                                       register_trained, run_folder)
from ...core.tracking.signature import signature_requiring
from ...data.images import BadRequest, example_image_b64, read_image, read_request
from .config import LOWER_IS_BETTER, metric_settings

if TYPE_CHECKING:
    from ...config import Config

TASK = "multilabel"
"""The `task` of the registered model's metadata: `predict` reads it to offer top-k / threshold selection."""


def select_labels(probs: np.ndarray, top_k: int = 0, threshold: float = 0.0) -> List[List[int]]:
    """Per sample, the indices of the predicted labels, most probable first: every label with probability >=
    `threshold` when `threshold` > 0, else the `top_k` most probable (ties: the lower index first)."""
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, axis=1, kind="stable")
    if threshold > 0:
        return [[int(i) for i in row if p[i] >= threshold] for row, p in zip(order, probs)]
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1 (got {top_k}) when no threshold is given")
    return [[int(i) for i in row[:top_k]] for row in order]


def selection_name(top_k: int, threshold: float) -> str:
    return f"p>={threshold:g}" if threshold > 0 else f"top-{top_k}"


class ClipPredictor:
    """images + captions -> label probabilities [N, labels] for one exported classifier (CPU or GPU)."""

    def __init__(self, export_dir: Path, device: Optional[str] = None):
        import torch

        from ...data.images import ImageTransform
        from .export import load_exported_model

        export_dir = Path(export_dir)
        if not export_dir.is_dir():
            raise FileNotFoundError(f"export folder not found: {export_dir}")
        model, meta = load_exported_model(export_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.classes: List[str] = list(meta["classes"])
        self.top_k = int(meta["top_k"])
        # zero-shot logits are logit_scale x cosine (CLIP's scale is 100): their sigmoids are not probabilities
        self.zero_shot = meta["model"]["fusion"] == "zero_shot"
        pre = meta["preprocessing"]
        self.transform = ImageTransform(int(meta["image_size"]), augment=False, mean=pre["image_mean"],
                                        std=pre["image_std"])

    def probabilities(self, images: Sequence[Any], texts: Sequence[str]) -> np.ndarray:
        import torch

        pixels = torch.stack([self.transform(img) for img in images])
        with torch.no_grad():
            logits = self.model(**self.model.inputs(pixels, [t or "" for t in texts], self.device))
        # float64: a float32 sigmoid rounds CLIP-scale logits (zero-shot's 15-35) to 1.0, and the tied labels
        # would be chosen by their position
        return torch.sigmoid(logits.double()).cpu().numpy()


def predictions_frame(predictor: ClipPredictor, images: Sequence[Any], texts: Sequence[str], keys: Sequence[Any],
                      slide_ids: Sequence[Any], batch_size: int = 32, top_k: int = 0, threshold: float = 0.0):
    """Run `predictor` in batches and lay the results out as the output DataFrame (see the module doc)."""
    import pandas as pd

    classes = predictor.classes
    k = top_k if top_k > 0 else predictor.top_k
    parts = [predictor.probabilities(list(images[i:i + batch_size]), list(texts[i:i + batch_size]))
             for i in range(0, len(images), batch_size)]
    p = np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, len(classes)))
    chosen = select_labels(p, k, threshold)
    frame: Dict[str, Any] = {"key": [None if x is None else str(x) for x in keys],
                             "slide_id": [None if s is None else str(s) for s in slide_ids]}
    for c, name in enumerate(classes):
        frame[f"prob_{name}"] = p[:, c]
    frame["labels"] = ["|".join(classes[i] for i in idx) for idx in chosen]
    frame["label_probs"] = [json.dumps([[classes[i], round(float(p[n, i]), 6)] for i in idx])
                            for n, idx in enumerate(chosen)]
    frame["selection"] = [selection_name(k, threshold)] * len(p)
    frame["description"] = list(texts)
    return pd.DataFrame(frame)


class ClipClassifier(mlflow.pyfunc.PythonModel):
    """Multi-label (image + caption) classifier as an MLflow pyfunc model."""

    def load_context(self, context) -> None:
        self.predictor = ClipPredictor(Path(context.artifacts["export"]))

    # The hint is what MLflow reads (a DataFrame hint: no schema inference, no validation); without one it
    # warns on every import of this class, inside a `catch_warnings` that no filter of ours can reach.
    def predict(self, context, model_input: pd.DataFrame, params: Optional[Dict[str, Any]] = None):
        params = params or {}
        top_k, n_labels = int(params.get("top_k", 0)), len(self.predictor.classes)
        threshold = float(params.get("threshold", 0.0))
        if top_k < 0 or not 0.0 <= threshold <= 1.0 or (top_k and threshold):  # as `predict` refuses its flags
            raise MlflowException(f"params top_k={top_k}, threshold={threshold:g}: give one of them, top_k >= 1 or "
                                  f"threshold in (0, 1] (neither: the model's own top-{self.predictor.top_k})",
                                  error_code=INVALID_PARAMETER_VALUE)
        if top_k > n_labels:  # every label would be predicted, and the selection column would say "top-<k>"
            raise MlflowException(f"params top_k={top_k} is more than the {n_labels} labels of this model; give at "
                                  f"most {n_labels} (0: the model's own top-{self.predictor.top_k})",
                                  error_code=INVALID_PARAMETER_VALUE)
        if threshold and self.predictor.zero_shot:  # every label's sigmoid is about 1: all would pass any threshold
            raise MlflowException(f"params threshold={threshold:g}: this is a zero-shot CLIP model, whose scores are "
                                  f"logit_scale x cosine similarity (15-35 for CLIP's scale of 100), not calibrated "
                                  f"probabilities, so a threshold would pass every label; choose the labels by "
                                  f"top_k (default its top-{self.predictor.top_k})",
                                  error_code=INVALID_PARAMETER_VALUE)
        batch_size = int(params.get("batch_size", 32))
        if batch_size < 1:  # range() refuses 0; a negative size ran no batch and built a frame of unequal columns
            raise MlflowException(f"params batch_size={params['batch_size']}: give a batch size >= 1 (default 32)",
                                  error_code=INVALID_PARAMETER_VALUE)
        try:
            req = read_request(model_input, self.predictor.transform.image_size,
                               require_text=bool(self.predictor.model.uses_text))
        except BadRequest as err:  # served: an HTTP 400 with this message (a ValueError: "an unexpected error")
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        return predictions_frame(self.predictor, req["images"], req["texts"], req["keys"], req["slide_ids"],
                                 batch_size, top_k=top_k, threshold=threshold)


USAGE = """```python
import mlflow, pandas as pd
m = mlflow.pyfunc.load_model('models:/<name>@<alias>')
m.predict(pd.DataFrame({'image': ['patch.png'], 'description': ['a caption']}))           # the model's top-k
m.predict(df, params={'top_k': 5})  # or params={'threshold': 0.5}: every label with p >= 0.5
```
Command line: `mmlnb-dist predict --model models:/<name>@<alias> IMAGES_OR_SHARDS --out preds.csv [--top-k K |
--threshold T]`."""


def model_package(run, export_dir: Optional[Path] = None, metric: str = "") -> ModelPackage:
    """What the registry logs for a CLIP run: the pyfunc around its export (default `<run folder>/export`), with a
    signature and an example from a real prediction (which also checks the export loads before registering).
    `metric` (the alias's) decides which settings runs must share to be compared (`config.metric_settings`)."""
    import pandas as pd

    from ...core.tracking.registry import RegistryError

    export_dir = Path(export_dir) if export_dir is not None else run_folder(run) / EXPORT_FOLDER
    if not export_dir.is_dir():
        raise RegistryError(f"export folder {export_dir} of run {run.info.run_id} does not exist "
                            f"(was the run trained to the end? If its folder moved, give it to register --export)")
    predictor = ClipPredictor(export_dir, device="cpu")
    classes = predictor.classes
    example = pd.DataFrame({"image": [example_image_b64(predictor.transform.image_size)],
                            "description": ["Sheets of small round blue cells with necrosis."],
                            "key": ["example"], "slide_id": [""]})
    image = read_image(example["image"][0], predictor.transform.image_size)  # decoded as training decodes it
    out = predictions_frame(predictor, [image], list(example["description"]), ["example"], [""])
    package_root = Path(__file__).resolve().parents[2]  # the mmlnb_dist package: the pyfunc imports it
    top_k = (f"The predicted label set is the model's top {predictor.top_k} labels by probability (the `top_k` its "
             f"run was evaluated on). Each `prob_<label>` is an independent sigmoid probability. Pass "
             f"`params={{'top_k': K}}` for another k or `params={{'threshold': T}}` for every label with p >= T.")
    if predictor.zero_shot:  # the card must not offer what `predict` refuses
        top_k = (f"The predicted label set is the model's top {predictor.top_k} labels by score (the `top_k` its "
                 f"run was evaluated on); pass `params={{'top_k': K}}` for another k. This is zero-shot CLIP: each "
                 f"`prob_<label>` is the sigmoid of logit_scale x cosine similarity, not a probability, so "
                 f"`threshold` is refused.")
    return ModelPackage(
        python_model=str(Path(__file__).with_name("pyfunc_code.py")), artifacts={"export": str(export_dir)},
        signature=signature_requiring(example, out, {"batch_size": 32, "top_k": 0, "threshold": 0.0}),
        input_example=example, title="CLIP multi-label classifier",
        card_sections={"Labels": f"{len(classes)} labels: " + ", ".join(classes), "Top-k": top_k, "Use": USAGE},
        metadata={"classes": classes, "task": TASK, "top_k": predictor.top_k,
                  "reads_text": bool(predictor.model.uses_text), "zero_shot": predictor.zero_shot},
        version_tags={"classes": json.dumps(classes), "task": TASK, "top_k": str(predictor.top_k)},
        code_paths=[str(package_root)], metric_settings=metric_settings(metric),
        # the encoder registries rebuild timm / open_clip architectures when the export names one
        requirements=["timm", "open_clip_torch"])


def register_run(run_id: str, name: str, *, alias: Optional[str], tracking_uri: Optional[str], metric: str,
                 mode: str, model_dir: Optional[Path] = None) -> RegisterResult:
    """Register a CLIP run's export (`model_dir`, default `<run folder>/export`): the recipe-table entry point
    that `mmlnb-dist register` and a search's best trial use."""
    return register_model(run_id, name, lambda run: model_package(run, model_dir, metric), alias=alias,
                          tracking_uri=tracking_uri, metric=metric, mode=mode)


def register_export(cfg: "Config", run_id: str, export_dir: Path) -> RegisterResult:
    """Register a finished run's export under `tracking.register_name` (the end-of-training hook, rank 0). The
    metric defaults to `best/val/<train.best_metric>` (the exported checkpoint's), lower-better for the loss and
    the Hamming loss."""
    metric, _ = alias_selection(cfg.tracking, cfg.train.best_metric, LOWER_IS_BETTER)  # as register_trained does
    return register_trained(cfg.tracking, cfg.run.output_dir, cfg.train.best_metric, LOWER_IS_BETTER, run_id,
                            lambda run: model_package(run, export_dir, metric))
