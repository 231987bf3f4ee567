"""Batch prediction with a registered model (`mmlnb-dist predict`).

Inputs: image files, folders of images, shard folders (with manifest.json) or single .tar shards. Every input
that cannot be read is listed with its reason; the others still get predictions. Descriptions come from the
shards' `txt`, a `--descriptions` CSV/JSONL (an image column `key`, `path`, `image` or `file`, the text in
`description` or `--description-column`, optional `slide_id` or `--slide-column`; rows match images by path, never
by a file name two images share), or a VLM. With slide ids, a per-slide file gives the mean probability and the
majority vote per slide.

Multi-label models (the CLIP recipe; their metadata says `task: multilabel`) give each image a probability per
label and a predicted label set (`labels`, `|`-joined): the model's top k, `--top-k K`, or `--threshold T`. Their
per-slide file gives the mean probability of every label and the label set chosen the same way from those means
(a majority vote of one label per patch means nothing when a patch has several).
"""
from __future__ import annotations

import base64
import csv
import json
from collections import Counter
from pathlib import Path
from itertools import islice
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .core.errors import UserError
from .core.progress import progress_bar
from .data.description_table import DescriptionTable
from .data.images import image_member, is_image_file, read_image
from .data.text_writer import shard_text_writer, text_writer_warnings


class PredictError(UserError, RuntimeError):
    """Bad prediction arguments (output format, description file...)."""


class ModelNotFound(PredictError):
    """The model URI does not resolve to a model."""


class UnsafeModel(PredictError):
    """The model folder holds a file that would be unpickled to load (a pickled pyfunc, a torch checkpoint)."""


def load_model(model_uri: str, tracking_uri: Optional[str] = None):
    """`mlflow.pyfunc.load_model` with a clear error for a missing model. The model folder is fetched first and
    refused (`UnsafeModel`, naming the file) when anything in it would be unpickled to load."""
    import mlflow

    from .core.tracking.registry import RegistryError, refuse_unpickling

    local = not model_uri.startswith(("models:/", "runs:/", "http", "s3:", "gs:"))
    if local and not Path(model_uri).exists():
        raise ModelNotFound(f"model not found: {model_uri} (no such folder; use models:/NAME@ALIAS)")
    if local and (Path(model_uri) / "model_config.json").is_file() and not (Path(model_uri) / "MLmodel").is_file():
        run_dir = Path(model_uri).parent
        raise ModelNotFound(f"{model_uri} is a training export (the weights `evaluate --export` scores), not an "
                            f"MLflow model: register it (mmlnb-dist register --run {run_dir} --name NAME), then "
                            f"predict with --model models:/NAME@champion")
    try:
        folder = Path(model_uri) if local else _download_model(model_uri, tracking_uri)
    except Exception as err:  # noqa: BLE001 - MLflow raises MlflowException / OSError variants
        raise ModelNotFound(f"model not found: {model_uri} ({_first_line(err)})") from None
    try:
        refuse_unpickling(folder, f"model {model_uri}: folder" if not local else "model folder")
    except RegistryError as err:
        raise UnsafeModel(str(err)) from None
    try:
        return mlflow.pyfunc.load_model(str(folder))
    except Exception as err:  # noqa: BLE001
        raise ModelNotFound(f"model not found: {model_uri} ({_first_line(err)})") from None


def _download_model(model_uri: str, tracking_uri: Optional[str]) -> Path:
    """The local folder of a `models:/` or `runs:/` URI, resolved in the store `tracking_uri` through an explicit
    client: `mlflow.set_tracking_uri` would change the store of everything else in this process (and of its
    subprocesses, through MLFLOW_* variables), and MLflow resolves `models:/` only through those."""
    import mlflow

    if not tracking_uri:
        return Path(mlflow.artifacts.download_artifacts(model_uri))
    source = model_uri
    if model_uri.startswith("models:/"):
        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        ref = model_uri[len("models:/"):].rstrip("/")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            source = client.get_model_version_by_alias(name, alias).source
        elif "/" in ref:
            name, _, version = ref.rpartition("/")
            source = client.get_model_version(name, version).source
        if source.startswith("models:/m-"):  # MLflow 3: a version's source is its logged model
            source = client.get_logged_model(source[len("models:/"):].rstrip("/")).artifact_location
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=tracking_uri))


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0][:300] if str(err) else type(err).__name__


def _shard_items(tar: Path) -> List[Dict[str, Any]]:
    """A shard's samples as items without their image bytes (`_with_image_bytes` reads them when predicted)."""
    from .data.reader import iter_shard_samples

    items = []
    for s in iter_shard_samples(tar):
        meta = {}
        if "json" in s:
            try:
                meta = json.loads(s["json"])
            except ValueError:
                meta = {}
        text = s["txt"].decode("utf-8", "replace") if isinstance(s.get("txt"), bytes) else (s.get("txt") or "")
        items.append({"key": s["__key__"], "source": f"{tar}:{s['__key__']}", "tar": tar,
                      "slide_id": meta.get("slide_id"), "description": text})
    return items


def _with_image_bytes(items: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    """The items in order, each shard sample with its image bytes (`data`), every shard read once: only what is
    being predicted is held, not every image of the inputs."""
    from .data.reader import iter_shard_samples

    i = 0
    while i < len(items):
        tar, j = items[i].get("tar"), i + 1
        if tar is None:
            yield items[i]
            i += 1
            continue
        while j < len(items) and items[j].get("tar") == tar:
            j += 1
        wanted = {it["key"]: it for it in items[i:j]}
        for s in iter_shard_samples(tar):
            it = wanted.pop(s["__key__"], None)
            if it is not None:
                ext = image_member(s)
                it["data"] = s[ext] if ext else None
                yield it
        yield from wanted.values()  # (gone from the shard since it was listed: reported as unreadable)
        i = j


def collect_inputs(paths: Sequence[Path],
                   split: Optional[str] = None) -> Tuple[List[Dict[str, Any]], List[Tuple[str, str]]]:
    """Expand inputs into items {key, source, data|path, slide_id, description}; returns (items, failures)."""
    items: List[Dict[str, Any]] = []
    failed: List[Tuple[str, str]] = []
    for path in paths:
        path = Path(path)
        try:
            if not path.exists():
                failed.append((str(path), "no such file or folder"))
            elif path.is_dir() and (path / "manifest.json").is_file():
                from .data.shardset import ShardSet

                manifest = ShardSet.open(path).manifest
                writer = shard_text_writer(manifest)
                for name, info in manifest["splits"].items():
                    if split and name != split:
                        continue
                    for shard in info.get("shards", []):
                        items.extend({**it, "written_by": writer} for it in _shard_items(path / shard["file"]))
            elif path.suffix == ".tar":
                items.extend(_shard_items(path))
            elif path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p.name))
                if not files:
                    failed.append((str(path), "folder holds no images"))
                items.extend({"key": str(f.relative_to(path).with_suffix("")).replace("/", "_"), "source": str(f),
                              "path": f} for f in files)
            else:
                items.append({"key": path.stem, "source": str(path), "path": path})
        except Exception as err:  # noqa: BLE001 - a broken shard must not hide the other inputs
            failed.append((str(path), f"{type(err).__name__}: {err}"))
    return items, failed


def require_descriptions(model_uri: str, items: List[Dict[str, Any]]) -> None:
    """A model that reads a description with each image would score images without one on empty text: refused,
    unless none of those images can be read (they are reported as unreadable, the others predicted)."""
    missing = [it for it in items if not str(it.get("description") or "").strip()]
    first = next((it for it in missing if _readable(it)), None)
    if first is not None:
        raise PredictError(f"{model_uri} reads a description with each image, and {len(missing)} of {len(items)} "
                           f"have none (first: {first['source']}); nothing was predicted. Give --descriptions FILE "
                           f"(path,description), --vlm MODEL [--adapter DIR] to write them as training did (the "
                           f"pipeline's report prints that line), or a shard set that carries them (`describe`'s "
                           f"output)")


def _vlm_describer(vlm: str, adapter: Optional[Path]) -> Callable[[List[Any]], List[str]]:
    """The VLM, loaded once, generating descriptions as `describe` does, with the `vlm` section of the fine-tuning
    run that wrote the adapter (`<run_dir>/config.yaml` beside `<run_dir>/adapter`, also for a model the adapter
    was merged into: same prompt and image size); else the defaults."""
    from .config import load_config
    from .recipes.vlm.describe import image_describer
    from .recipes.vlm.merge import merged_from

    adapter_dir = adapter or merged_from(vlm).get("adapter")
    trained_with = Path(adapter_dir).parent / "config.yaml" if adapter_dir else None
    cfg = load_config(trained_with if trained_with and trained_with.is_file() else None)
    return image_describer(vlm, adapter, cfg.vlm, cfg.distributed.precision)


def _by_slide(rows: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    by_slide: Dict[str, List[Dict[str, Any]]] = {}
    for r in rows:
        if r.get("slide_id"):
            by_slide.setdefault(str(r["slide_id"]), []).append(r)
    return dict(sorted(by_slide.items()))


def multilabel_slide_aggregates(rows: List[Dict[str, Any]], classes: Sequence[str], top_k: int,
                                threshold: float = 0.0) -> List[Dict[str, Any]]:
    """Per slide: patch count, mean probability per label, and the label set chosen from those means by the same
    rule as the patches' (`threshold` > 0: every label with mean >= threshold; else the `top_k` highest)."""
    from .recipes.clip.pyfunc_model import select_labels, selection_name

    out = []
    for slide, rs in _by_slide(rows).items():
        mean = [sum(float(r[f"prob_{c}"]) for r in rs) / len(rs) for c in classes]
        chosen = select_labels([mean], top_k, threshold)[0]
        row = {"slide_id": slide, "n_patches": len(rs), "labels": "|".join(classes[i] for i in chosen),
               "selection": selection_name(top_k, threshold)}
        row.update({f"mean_prob_{c}": m for c, m in zip(classes, mean)})
        out.append(row)
    return out


def slide_aggregates(rows: List[Dict[str, Any]], classes: Sequence[str]) -> List[Dict[str, Any]]:
    """Per slide: patch count, mean probability per class, its argmax, and the majority vote of patch labels
    (ties broken by the higher mean probability)."""
    out = []
    for slide, rs in _by_slide(rows).items():
        mean = {c: sum(float(r[f"prob_{c}"]) for r in rs) / len(rs) for c in classes}
        votes = Counter(r["label"] for r in rs)
        top = max(votes.values())
        majority = max((c for c in classes if votes.get(c) == top), key=lambda c: mean[c])
        row = {"slide_id": slide, "n_patches": len(rs), "label_mean_prob": max(classes, key=lambda c: mean[c]),
               "label_majority": majority}
        row.update({f"mean_prob_{c}": mean[c] for c in classes})
        row.update({f"votes_{c}": votes.get(c, 0) for c in classes})
        out.append(row)
    return out


def _write(rows: List[Dict[str, Any]], path: Path) -> None:
    """Write `rows` to `path` (CSV or JSONL) whole or not at all: a killed write leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "w", newline="") as fh:
            if path.suffix == ".jsonl":
                fh.writelines(json.dumps(r, default=str) + "\n" for r in rows)
            else:
                writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
                writer.writeheader()
                writer.writerows(rows)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _image_bytes(item: Dict[str, Any]) -> bytes:
    """An item's encoded image: its bytes (a shard sample's, once read), else its file's."""
    if item.get("data") is not None:
        return item["data"]
    if item.get("path") is None:
        raise ValueError("no image in the shard sample")
    return Path(item["path"]).read_bytes()


def _readable(item: Dict[str, Any]) -> bool:
    try:  # a shard sample's image is checked when it is predicted
        return item.get("tar") is not None or read_image(_image_bytes(item)) is not None
    except (ValueError, OSError):
        return False


PREDICT_CHUNK = 256
"""Inputs decoded, described and predicted at a time."""


def _decoded(chunk: List[Dict[str, Any]], failed: List[Tuple[str, str]]) -> Tuple[List[Dict[str, Any]], List[Any]]:
    """The chunk's items whose image decodes, with their images; the others are added to `failed`."""
    good, images = [], []
    for it in chunk:
        try:
            data = _image_bytes(it)
            images.append(read_image(data))
            it["data"] = data
            good.append(it)
        except (ValueError, OSError) as err:
            failed.append((it["source"], str(err)))
    return good, images


def _request_frame(good: List[Dict[str, Any]]):
    """The served model's input (`read_request`): base64 images, descriptions, keys, slide ids."""
    import pandas as pd

    return pd.DataFrame({"image": [base64.b64encode(it["data"]).decode() for it in good],
                         "description": [it.get("description") or "" for it in good], "key": [it["key"] for it in good],
                         "slide_id": [str(it["slide_id"]) if it.get("slide_id") else "" for it in good]})


def predict_to_file(model_uri: str, inputs: Sequence[Path], out: Path, descriptions: Optional[Path] = None,
                    vlm: Optional[str] = None, adapter: Optional[Path] = None, split: Optional[str] = None,
                    batch_size: int = 32, tracking_uri: Optional[str] = None, top_k: Optional[int] = None,
                    threshold: Optional[float] = None, description_column: str = "description",
                    slide_column: Optional[str] = None) -> Dict[str, Any]:
    """Predict every readable input and write `out` (+ `<out>.slides.<ext>` when slide ids are known).
    `descriptions` rows are matched to the images by path (`data.description_table`), their text read from
    `description_column`, their slide ids from `slide_column` (default `slide_id`).
    `top_k` / `threshold` choose a multi-label model's predicted label set (refused for single-label models).

    Returns {"predicted": n, "failed": [(input, reason)], "out": path, "slides_out": path|None, "warnings": [..]}:
    `warnings` names the inputs whose descriptions have another writer than the model's training text.
    """
    out = Path(out)
    if out.suffix not in (".csv", ".jsonl"):
        raise PredictError(f"--out must end in .csv or .jsonl (got {out.name})")
    if top_k is not None and threshold is not None:
        raise PredictError("--top-k and --threshold both given: a label set is chosen by one of them")
    if top_k is not None and top_k < 1:
        raise PredictError(f"--top-k must be at least 1 (got {top_k})")
    if threshold is not None and not 0 < threshold <= 1:
        raise PredictError(f"--threshold must be in (0, 1] (got {threshold})")
    table = DescriptionTable.read(descriptions, description_column, slide_column, require_text=not vlm) \
        if descriptions else None
    model = load_model(model_uri, tracking_uri)
    model_meta = (getattr(model.metadata, "metadata", None) or {}) if getattr(model, "metadata", None) else {}
    multilabel = model_meta.get("task") == "multilabel"
    params: Dict[str, Any] = {"batch_size": batch_size}
    if multilabel:
        params.update({"top_k": top_k or 0, "threshold": threshold or 0.0})
    elif top_k is not None or threshold is not None:
        raise PredictError(f"--top-k / --threshold choose the label set of a multi-label model; {model_uri} "
                           f"predicts one class per image (its `label` column)")
    items, failed = collect_inputs(inputs, split)
    for it in items if table else ():
        row = table.find(it["key"], it.get("path"))
        if row:
            if not vlm:  # with --vlm the VLM writes every description; the table gives the slides
                it["description"], it["written_by"] = table.description(row), None
            it["slide_id"] = it.get("slide_id") or table.slide_id(row)
    reads_text = bool(model_meta.get("reads_text"))  # (models registered before this key existed: not checked)
    if reads_text and not vlm:
        require_descriptions(model_uri, items)  # before a single image is decoded
    describe, writer = None, None
    if vlm and items:
        from .recipes.vlm.merge import fine_tune_sha256

        describe = _vlm_describer(vlm, adapter)
        writer = {"model": vlm, "adapter_sha256": fine_tune_sha256(vlm, adapter)}
    rows: List[Dict[str, Any]] = []
    classes: List[str] = []
    done: List[Dict[str, Any]] = []
    bar = progress_bar(total=len(items), desc="predict", unit="img")
    # A chunk at a time (decoded, described, predicted, its image bytes dropped): memory stays bounded by the
    # chunk, whatever the inputs hold (a whole slide set), and the bar moves as the work does.
    stream = _with_image_bytes(items)
    while True:
        chunk = list(islice(stream, PREDICT_CHUNK))
        if not chunk:
            break
        good, images = _decoded(chunk, failed)
        if describe is not None and good:
            for it, text in zip(good, describe(images)):
                it["description"], it["written_by"] = text, writer
            if reads_text:
                require_descriptions(model_uri, good)
        if good:
            pred = model.predict(_request_frame(good), params=params)
            classes = [c[len("prob_"):] for c in pred.columns if c.startswith("prob_")]
            for it, rec in zip(good, pred.to_dict("records")):
                rec["source"] = it["source"]
                rec["slide_id"] = rec.get("slide_id") or None
                rows.append(rec)
        for it in chunk:
            it.pop("data", None)
        done.extend(good)
        bar.update(len(chunk))
    bar.close()
    warnings = text_writer_warnings(model_uri, model_meta, done)
    _write(rows, out)
    slides_out = None
    if multilabel:
        agg = multilabel_slide_aggregates(rows, classes, top_k or int(model_meta.get("top_k", 1)), threshold or 0.0)
    else:
        agg = slide_aggregates(rows, classes)
    if agg:
        slides_out = out.with_name(out.stem + ".slides" + out.suffix)
        _write(agg, slides_out)
    return {"predicted": len(rows), "failed": failed, "out": str(out), "warnings": warnings,
            "slides_out": str(slides_out) if slides_out else None}
