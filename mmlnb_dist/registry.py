"""The MLflow Model Registry: log a trained run's export as a pyfunc model, register it, move an alias.

    register_run(run_id, "mmlnb-nb", alias="champion", tracking_uri=uri)

The alias moves to the new version only when its monitored metric beats the current holder's on the same
split (aliases, not the deprecated stages). Every version carries a model card (data, metrics, config).
"""
from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import yaml


class RegistryError(RuntimeError):
    """The run, its export or the registered model is missing or unusable; the message says which."""


@dataclass
class RegisterResult:
    name: str
    version: str
    model_uri: str
    alias: Optional[str]
    alias_moved: bool
    metric: str
    value: Optional[float]
    previous_value: Optional[float]
    reason: str

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _example_image_b64(size: int = 32) -> str:
    from PIL import Image

    img = Image.new("RGB", (size, size), (200, 120, 180))  # H&E-ish pink
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def run_metric(run, metric: str) -> Optional[float]:
    """A run's value of `metric`; `best/val/x` (the exported best checkpoint) falls back to `val/x`."""
    value = run.data.metrics.get(metric)
    if value is None and metric.startswith("best/"):
        value = run.data.metrics.get(metric[len("best/"):])
    return value


def better(new: Optional[float], old: Optional[float], mode: str) -> bool:
    """Whether `new` beats `old` (a missing or NaN holder value always loses)."""
    if new is None or (isinstance(new, float) and math.isnan(new)):
        return False
    if old is None or (isinstance(old, float) and math.isnan(old)):
        return True
    return new > old if mode == "max" else new < old


def model_card(run, export_dir: Path, classes, metric: str) -> str:
    """A Markdown model card: data lineage (dataset inputs), metrics, classes, config."""
    lines = [f"# mmlnb-nb classifier from run `{run.info.run_id}` ({run.info.run_name})", ""]
    lines += ["## Classes", ", ".join(classes), "", "## Data"]
    for ds_input in getattr(run.inputs, "dataset_inputs", None) or []:
        ds = ds_input.dataset
        ctx = next((t.value for t in ds_input.tags if t.key == "mlflow.data.context"), "?")
        profile = json.loads(ds.profile) if ds.profile else {}
        lines.append(f"- {ctx}: `{ds.name}` digest `{ds.digest}`, {profile.get('num_samples')} samples, "
                     f"class counts {profile.get('class_counts')}, source {ds.source}")
        if profile.get("provenance"):
            lines.append(f"  - descriptions/provenance: `{json.dumps(profile['provenance'])[:500]}`")
    lines += ["", f"## Metrics (selection metric: `{metric}`)"]
    for k, v in sorted(run.data.metrics.items()):
        if k.startswith(("val/", "test/", "train/")):
            lines.append(f"- {k}: {v:.4f}")
    env = {k: v for k, v in run.data.tags.items() if k.startswith(("version.", "git.", "device"))}
    lines += ["", "## Environment"] + [f"- {k}: {v}" for k, v in sorted(env.items())]
    cfg_path = next((p for p in (export_dir / "config.yaml", export_dir.parent / "config.yaml") if p.is_file()), None)
    if cfg_path is not None:
        lines += ["", "## Config", "```yaml", cfg_path.read_text().rstrip(), "```"]
    lines += ["", "## Use", "```python", "import mlflow, pandas as pd",
              "m = mlflow.pyfunc.load_model('models:/<name>@<alias>')",
              "m.predict(pd.DataFrame({'image': ['patch.png'], 'description': ['...']}))", "```"]
    return "\n".join(lines) + "\n"


def find_export_dir(run, export_dir: Optional[Path] = None) -> Path:
    """The fusion recipe's export folder of a run: given, or `<run_dir tag>/export`."""
    if export_dir is None:
        run_dir = run.data.tags.get("run_dir")
        if not run_dir:
            raise RegistryError(f"run {run.info.run_id} has no 'run_dir' tag; pass the export folder (--export)")
        export_dir = Path(run_dir) / "export"
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise RegistryError(f"export folder {export_dir} of run {run.info.run_id} does not exist "
                            f"(was the run trained to the end?)")
    return export_dir


def _requirements():
    """Pinned from this environment: skips MLflow's slow requirement inference (it reloads the model)."""
    from importlib import metadata

    reqs = []
    for name in ("torch", "torchvision", "transformers", "safetensors", "tokenizers", "numpy", "pandas",
                 "pillow", "pyyaml", "pydantic", "mlflow"):
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


def register_run(run_id: str, name: str, alias: Optional[str] = "champion", tracking_uri: Optional[str] = None,
                 metric: str = "best/val/balanced_accuracy", mode: str = "max",
                 export_dir: Optional[Path] = None) -> RegisterResult:
    """Log run `run_id`'s export as a pyfunc model, register it as a new version of `name`, maybe move `alias`.

    The alias moves only when the new version's `metric` (read from the run) beats the current holder's,
    which is read from the holder's own run; the same metric key means the same split.
    """
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from .pyfunc_model import MMLNBClassifier, load_predictor, predictions_frame

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as err:  # noqa: BLE001 - MLflow raises several types for a missing run
        raise RegistryError(f"run {run_id} not found at {client.tracking_uri}: {err}") from None
    export_dir = find_export_dir(run, export_dir)
    predictor = load_predictor(export_dir)
    classes = list(predictor.classes)
    value = run_metric(run, metric)

    # Signature and example from a real prediction: checks the export works before anything is registered.
    example = pd.DataFrame({"image": [_example_image_b64()], "description": ["Sheets of small round blue cells."],
                            "key": ["example"], "slide_id": [""]})
    from .pyfunc_model import decode_image

    out = predictions_frame(predictor, [decode_image(example["image"][0])], list(example["description"]),
                            ["example"], [""])
    signature = infer_signature(example, out, params={"batch_size": 32})

    card_dir = export_dir.parent / "model_card"
    card_dir.mkdir(parents=True, exist_ok=True)
    card = card_dir / "MODEL_CARD.md"
    card.write_text(model_card(run, export_dir, classes, metric))

    package_dir = Path(__file__).resolve().parent
    previous_tracking = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        # Attach the logged model to the training run (start_run(run_id) here, never MLFLOW_RUN_ID).
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=MMLNBClassifier(),
                artifacts={"export": str(export_dir), "model_card": str(card)},
                code_paths=[str(package_dir)], signature=signature, input_example=example,
                pip_requirements=_requirements(),
                registered_model_name=name,
                metadata={"classes": classes, "metric": metric, "metric_value": value},
            )
    finally:
        mlflow.set_tracking_uri(previous_tracking)
    version = str(info.registered_model_version)
    client.update_model_version(name, version, description=card.read_text()[:5000])
    client.set_model_version_tag(name, version, "source_run_id", run_id)
    client.set_model_version_tag(name, version, "classes", json.dumps(classes))
    if value is not None:
        client.set_model_version_tag(name, version, metric, str(value))

    previous, moved, reason = None, False, "no alias requested"
    if alias:
        holder = None
        try:
            holder = client.get_model_version_by_alias(name, alias)
        except Exception:  # noqa: BLE001 - no holder yet
            holder = None
        if holder is not None and holder.run_id:
            try:
                previous = run_metric(client.get_run(holder.run_id), metric)
            except Exception:  # noqa: BLE001 - holder's run deleted: treat as no value
                previous = None
        if holder is None:
            moved, reason = True, f"first version with alias '{alias}'"
        elif better(value, previous, mode):
            moved, reason = True, f"{metric} {value} beats {previous} (version {holder.version})"
        else:
            reason = f"{metric} {value} does not beat {previous} (version {holder.version} keeps '{alias}')"
        if moved:
            client.set_registered_model_alias(name, alias, version)
    return RegisterResult(name, version, f"models:/{name}/{version}", alias, moved, metric, value, previous, reason)


def register_after_training(cfg, result: Dict[str, Any], run_id: Optional[str]) -> Optional[RegisterResult]:
    """Hook for the end of training: register when `tracking.register_name` is set (rank 0 only, caller's job).

    `result` is the recipe's return dict (`run_dir`, `val/...`); the metric defaults to
    `best/val/<train.best_metric>` (the exported best checkpoint's validation value).
    """
    from .tracking import default_tracking_uri

    name = cfg.tracking.register_name
    if not name or not run_id:
        return None
    metric = cfg.tracking.register_metric or f"best/val/{cfg.train.best_metric}"
    mode = "min" if metric.endswith("loss") and cfg.tracking.register_metric is None else cfg.tracking.register_mode
    export_dir = Path(result["run_dir"]) / "export" if result.get("run_dir") else None
    return register_run(run_id, name, cfg.tracking.register_alias, default_tracking_uri(cfg), metric, mode,
                        export_dir)


def write_result(result: RegisterResult, path: Path) -> None:
    Path(path).write_text(yaml.safe_dump(result.as_dict(), sort_keys=False))
