"""The MLflow pyfunc wrapper of a trained classifier (what `models:/mmlnb-nb@champion` loads).

Input: a pandas DataFrame with columns
  - `image` (str): a file path, or the image bytes base64-encoded (what `mlflow models serve` receives);
  - `description` (str, optional): the text branch's input ("" when none: the image branch still works);
  - `key`, `slide_id` (str, optional): carried through to the output.
Output: a DataFrame with `key`, `slide_id`, `label` (predicted subtype), `prob_<class>` per class, `alpha`
(PRMF text weight, NaN for fusions without one) and `description`.

The model folder holds the fusion recipe's export directory (weights, class list, text encoder and
tokenizer files, config) as the `export` artifact and a model card; `load_context` rebuilds the network
through the fusion recipe's loader, so serving and training share one code path.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import mlflow.pyfunc
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")


def decode_image(value: Any):
    """A PIL RGB image from a path, raw bytes, or base64 text; raises ValueError with the reason."""
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(value, (bytes, bytearray)):
            data = bytes(value)
        elif isinstance(value, str) and (len(value) < 4096 and Path(value).suffix.lower() in IMAGE_EXTENSIONS):
            data = Path(value).read_bytes()
        elif isinstance(value, str):
            data = base64.b64decode(value, validate=True)
        else:
            raise ValueError(f"unsupported image value of type {type(value).__name__}")
        img = Image.open(io.BytesIO(data))
        img.load()  # decode now, so a truncated file fails here rather than inside the model
        return img.convert("RGB")
    except FileNotFoundError:
        raise ValueError(f"file not found: {value}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, base64.binascii.Error) as err:
        raise ValueError(f"not a readable image ({type(err).__name__}: {err})") from None


def _column(df, name: str, default: Any) -> List[Any]:
    if name in df.columns:
        return [default if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in df[name]]
    return [default] * len(df)


class MMLNBClassifier(mlflow.pyfunc.PythonModel):
    """Dual-branch (image + description) subtype classifier as an MLflow pyfunc model."""

    def load_context(self, context) -> None:
        self.predictor = load_predictor(Path(context.artifacts["export"]))

    def predict(self, context, model_input, params: Optional[Dict[str, Any]] = None):
        import pandas as pd

        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "image" not in df.columns:
            raise ValueError("input needs an 'image' column (file path or base64-encoded image bytes)")
        images = [decode_image(v) for v in df["image"]]
        texts = [str(t) for t in _column(df, "description", "")]
        batch = int((params or {}).get("batch_size", 32))
        return predictions_frame(self.predictor, images, texts, _column(df, "key", None),
                                 _column(df, "slide_id", None), batch)


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

    def __init__(self, model, classes: Sequence[str], image_size: int, device: Optional[str] = None):
        import torch

        from .data.transforms import ImageTransform

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.classes = list(classes)
        self.transform = ImageTransform(image_size, augment=False)

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
    """Rebuild the classifier from the fusion recipe's export folder through its own loader
    (`mmlnb_dist.checkpoint.load_exported_model`: model, tokenize, classes; image size in model_config.json)."""
    import json

    from .checkpoint import load_exported_model

    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise FileNotFoundError(f"export folder not found: {export_dir}")
    model, _tokenize, classes = load_exported_model(export_dir)
    meta = json.loads((export_dir / "model_config.json").read_text())
    return ExportPredictor(model, classes, int(meta.get("image_size", 224)), device)
