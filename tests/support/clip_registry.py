"""A tiny CLIP run tracked in a SQLite MLflow store and registered at its end, and an independent reference for
its probabilities (tests/recipes/clip/test_clip_registry.py, test_clip_predict.py, test_clip_plots.py)."""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np

from support.clip import caption_shards, clip_config

AUTO_NAME = "clip-auto"
"""The registered name `tracking.register_name` gives the trained run."""


def registered_run(root: Path) -> Iterator[Dict[str, Any]]:
    """(A module fixture's body.) 64 pairs (val and test splits), 2 epochs, MLflow tracking in `root/runs`,
    registered at the end under AUTO_NAME; yields {root, shards, result, uri, run_id, cfg}.

    MLflow registers models in its process-wide registry URI, which `predict` (and earlier test modules) set:
    the module's store is the registry while it runs, and the URI is unset again afterwards."""
    import mlflow

    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    uri = f"sqlite:///{(root / 'runs' / 'mlflow.db').resolve()}"
    mlflow.set_registry_uri(uri)
    try:
        shards = caption_shards(root, n=64, size=32, test_fraction=0.2)
        cfg = clip_config(shards, root / "runs", "tracking.backends=[mlflow]", "train.epochs=2",
                          "train.log_every=1", f"tracking.register_name={AUTO_NAME}", name="reg")
        result = run(recipe_class("clip"), cfg)
        client = mlflow.MlflowClient(uri, registry_uri=uri)
        exp = client.get_experiment_by_name(cfg.tracking.experiment)
        run_id = client.search_runs([exp.experiment_id])[0].info.run_id
        yield {"root": root, "shards": shards, "result": result, "uri": uri, "run_id": run_id, "cfg": cfg}
    finally:
        mlflow.set_registry_uri(None)  # MLflow also exports it to the environment for subprocesses
        os.environ.pop("MLFLOW_REGISTRY_URI", None)


def raw_split(shards: Path, split: str) -> List[Dict[str, Any]]:
    """Every sample of a split read straight from its tar files with `tarfile` (not the package's reader):
    {key, png (bytes), text, labels}."""
    manifest = json.loads((shards / "manifest.json").read_text())
    samples: Dict[str, Dict[str, Any]] = {}
    for shard in manifest["splits"][split]["shards"]:
        with tarfile.open(shards / shard["file"]) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                data = tar.extractfile(member).read()
                s = samples.setdefault(key, {"key": key})
                if ext == "png":
                    s["png"] = data
                elif ext == "txt":
                    s["text"] = data.decode()
                elif ext == "json":
                    s["labels"] = json.loads(data)["labels"]
    return [samples[k] for k in sorted(samples)]


def export_probabilities(export_dir: Path, pngs: Sequence[bytes], texts: Sequence[str]
                         ) -> Tuple[np.ndarray, List[str]]:
    """sigmoid(logits) of the exported model (load_exported_model), the images normalised here with numpy from
    the export's own preprocessing description (the test images already have the model's size)."""
    import torch
    from PIL import Image

    from mmlnb_dist.recipes.clip.export import load_exported_model

    model, meta = load_exported_model(export_dir)
    pre = meta["preprocessing"]
    arrays = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float32) / 255.0 for b in pngs]
    assert all(a.shape == (meta["image_size"], meta["image_size"], 3) for a in arrays)
    x = (np.stack(arrays) - np.asarray(pre["image_mean"], np.float32)) / np.asarray(pre["image_std"], np.float32)
    pixels = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        logits = model(**model.inputs(pixels, list(texts), torch.device("cpu")))
    return torch.sigmoid(logits.float()).numpy(), list(meta["classes"])
