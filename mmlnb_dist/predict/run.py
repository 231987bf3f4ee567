"""`predict_to_file`: predict every readable input with a registered model, a chunk at a time, journaled so that
an interrupted job resumes (`journal.py`), and write the predictions and per-slide aggregates."""
from __future__ import annotations

import base64
import csv
import io
import json
import logging
from collections import Counter
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..core.files import refuse_file_in_the_way, replace_text, strict_json
from ..core.progress import progress_bar
from ..core.runlock import ReadLock
from ..data.description_table import DescriptionTable
from ..data.text_writer import TINY_KEYS, WEIGHTS_KEY, text_writer_warnings
from .errors import PredictError
from .agreement import agreement
from .inputs import collect_inputs, decoded, require_descriptions, shard_sets_read, with_image_bytes
from .journal import PredictJournal, digest, file_digest, files_digest, writer_job
from .model import load_model
from .provenance import model_identity, model_record_file, warn_if_other_model, write_model_record
from .skipped import SIDE_FILES, side_file, write_skipped
from .slides import multilabel_slide_aggregates, slide_aggregates

log = logging.getLogger(__package__)  # "[predict]" on the console

PREDICT_CHUNK = 256
"""Inputs decoded, described, predicted and journaled at a time (the default of `predict_to_file(chunk_size=)`)."""


def vlm_settings(vlm: str, adapter: Optional[Path], given: Optional[Any] = None) -> Any:
    """The config whose `vlm` section (prompt, image size, decoding, tiny model) describes images for a model, as
    `describe` described its training images: the fine-tuning run that wrote the adapter (`<run_dir>/config.yaml`
    beside `<run_dir>/adapter`, also for a model the adapter was merged into), else `given` (`--config`: the
    pipeline's printed line passes its own), else the defaults, with a warning (text unlike the training text)."""
    from ..config import load_config
    from ..recipes.vlm.merge import merged_from
    from ..recipes.vlm.trained_with import training_config_path

    trained_with = training_config_path(vlm, adapter)
    if trained_with is not None:
        if given is None:
            return load_config(trained_with)
        # the generation batch size does not change the text (`describe.RESUME_MAY_CHANGE`): a predict out of
        # memory lowers it here; what changes the text stays the run's, and a given value kept from it is said
        cfg = load_config(trained_with, [f"vlm.generation.batch_size={given.vlm.generation.batch_size}"])
        ours, theirs = text_settings(cfg), text_settings(given)
        kept = [f"{k}={theirs[k]!r}" for k in ours if ours[k] != theirs[k]]
        if kept:
            log.warning("--config / key=value settings not applied: %s (the VLM settings that change the text are "
                        "those of the adapter's fine-tuning run, %s, whose descriptions the model learned from; "
                        "only vlm.generation.batch_size is taken)", ", ".join(kept), trained_with)
        return cfg
    adapter_dir = adapter or merged_from(vlm).get("adapter")
    if given is not None:
        return given
    log.warning("--vlm %s describes the images with the built-in defaults of the vlm settings (prompt, image size, "
                "decoding): no fine-tuning run beside %s and no --config; pass --config with the settings that wrote "
                "the model's training descriptions, or its text may be unlike what the model learned from",
                vlm, adapter_dir or "an adapter")
    return load_config(None)


def text_settings(cfg: Any) -> Dict[str, Any]:
    """The settings of `cfg` that change what the VLM writes (as `describe.provenance` records them), by key."""
    v = cfg.vlm
    generation = v.generation.model_dump(mode="json")
    generation.pop("batch_size")  # (an image's text does not depend on its batch)
    return {"vlm.prompt": v.prompt, "vlm.min_pixels": v.min_pixels, "vlm.max_pixels": v.max_pixels,
            "vlm.tiny_seed": v.tiny_seed, "vlm.tiny_vision": v.tiny_vision,
            **{f"vlm.generation.{k}": val for k, val in generation.items()},
            "distributed.precision": str(cfg.distributed.precision)}


def _vlm_describer(vlm: str, adapter: Optional[Path], given: Optional[Any] = None) -> Callable[[List[Any]], List[str]]:
    """The VLM, loaded once, generating descriptions as `describe` does with `vlm_settings`."""
    from ..recipes.vlm.describe import image_describer

    cfg = vlm_settings(vlm, adapter, given)
    return image_describer(vlm, adapter, cfg.vlm, cfg.distributed.precision)


def _base_weights(vlm: str) -> Dict[str, str]:
    """{`WEIGHTS_KEY`: digest} of the base VLM's weight bytes, as describe records them ({} for `tiny`, told by its
    seed and tower, and for a hub id only the network has): `same_writer` then judges the writer by its bytes, so a
    copy of the training weights elsewhere is the training writer and a folder whose weights were replaced is not
    (by name alone it was the other way round), and a journal of other base weights is not resumed."""
    from ..recipes.vlm.model import TINY
    from ..recipes.vlm.weights_identity import weights_identity

    if vlm == TINY:
        return {}
    digest_ = weights_identity(vlm, vlm).get(WEIGHTS_KEY)
    return {WEIGHTS_KEY: digest_} if digest_ else {}


def vlm_writer(vlm: str, adapter: Optional[Path], cfg: Any) -> Dict[str, Any]:
    """Who writes the descriptions with `cfg` (`vlm_settings`), as the journal's job and `same_writer` know it. The
    settings are part of it: a resume under another prompt or decoding would mix two kinds of text; the generation
    batch size is not (a job out of memory continues with a smaller one)."""
    from ..recipes.vlm.merge import fine_tune_sha256

    return {"model": vlm, "adapter_sha256": fine_tune_sha256(vlm, adapter),
            **{k: getattr(cfg.vlm, k) for k in TINY_KEYS},  # (which `tiny`: `same_writer`)
            **_base_weights(vlm),  # (which base bytes, as describe records them: `same_writer`)
            "settings": digest([json.dumps(text_settings(cfg), sort_keys=True)])}


def _request_frame(good: List[Dict[str, Any]]):
    """The served model's input (`read_request`): base64 images, descriptions, keys, slide ids."""
    import pandas as pd

    return pd.DataFrame({"image": [base64.b64encode(it["data"]).decode() for it in good],
                         "description": [it.get("description") or "" for it in good], "key": [it["key"] for it in good],
                         "slide_id": [str(it["slide_id"]) if it.get("slide_id") else "" for it in good]})


def _write(rows: List[Dict[str, Any]], path: Path, columns: Sequence[str] = ()) -> None:
    """Write `rows` to `path` (CSV or JSONL) whole or not at all (`core.files.replace_text`); a CSV of no rows has
    the header `columns` (a blank line is no CSV a reader takes)."""
    if path.suffix == ".jsonl":
        text = "".join(json.dumps(strict_json(r), default=str, allow_nan=False) + "\n" for r in rows)
    else:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in rows for k in r)) or list(columns))
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    replace_text(path, text)


def _output_columns(model) -> List[str]:
    """The columns of the model's predictions (its signature's outputs) and the `source` predict adds; none when
    the model was logged without a signature."""
    try:
        return [*model.metadata.get_output_schema().input_names(), "source"]
    except Exception:  # noqa: BLE001 - no signature (None), or metadata of another shape
        return []


def _check_arguments(out: Path, top_k: Optional[int], threshold: Optional[float], chunk_size: int) -> None:
    if out.suffix not in (".csv", ".jsonl"):
        raise PredictError(f"--out must end in .csv or .jsonl (got {out.name})")
    if out.is_dir():  # (else a traceback once every input is predicted)
        raise PredictError(f"--out {out} is a folder; give a file path, e.g. {out / ('preds' + out.suffix)}")
    refuse_file_in_the_way(out.parent, f"--out {out}")
    # `p.slides.csv` / `p.skipped.csv` are the side files of `--out p.csv`, which that job overwrites or removes:
    # predictions written under such a name would be lost to it without a word
    for kind, what in SIDE_FILES.items():
        if out.stem.endswith(f".{kind}"):
            owner = out.with_name(out.stem[:-len(kind) - 1] + out.suffix)
            raise PredictError(f"--out {out} is the name `predict --out {owner}` gives its {what} (and replaces or "
                               f"removes them): give the predictions another name, e.g. "
                               f"{out.with_name(out.stem.replace('.' + kind, '_' + kind) + out.suffix)}")
    if chunk_size < 1:
        raise PredictError(f"--chunk-size must be at least 1 (got {chunk_size})")
    if top_k is not None and threshold is not None:
        raise PredictError("--top-k and --threshold both given: a label set is chosen by one of them")
    if top_k is not None and top_k < 1:
        raise PredictError(f"--top-k must be at least 1 (got {top_k})")
    if threshold is not None and not 0 < threshold <= 1:
        raise PredictError(f"--threshold must be in (0, 1] (got {threshold})")


def _plain(record: Dict[str, Any]) -> Dict[str, Any]:
    """A prediction row as its journal line reads back, so fresh and resumed rows are written alike."""
    return json.loads(json.dumps(record, default=str))


def _writers(good: List[Dict[str, Any]]) -> List[Tuple[Any, int]]:
    """Who wrote the descriptions of a chunk's predicted inputs, with counts (None: unknown, e.g. a table's)."""
    counts = Counter(json.dumps(it.get("written_by"), sort_keys=True) for it in good)
    return [(json.loads(w), n) for w, n in counts.items()]


def _loose_files(items: List[Dict[str, Any]], sets: List[Path]) -> List[Path]:
    """The image files and the shards outside a shard set that the inputs read: overwritten in place between a
    kill and the rerun, they keep their names, and only their size and mtime tell (`journal.files_digest`); a
    set's shards are told by its manifest."""
    read = dict.fromkeys(it.get("path") or it.get("tar") for it in items)  # (a shard once, not per sample)
    return [f for f in read if f is not None and not (Path(f).suffix == ".tar" and Path(f).parent.resolve() in sets)]


def _predict_chunk(model, model_uri: str, params: Dict[str, Any], chunk: List[Dict[str, Any]],
                   describe: Optional[Callable[[List[Any]], List[str]]], writer: Optional[Dict[str, Any]],
                   reads_text: bool) -> Tuple[List[Dict[str, Any]], List[Tuple[str, str]], List[Dict[str, Any]]]:
    """One chunk decoded, described (with `describe`: the VLM), predicted and its image bytes dropped: (rows as the
    journal holds them, unreadable inputs, the predicted items)."""
    failed: List[Tuple[str, str]] = []
    good, images = decoded(chunk, failed)
    if describe is not None and good:
        from ..recipes.vlm.describe import too_elongated

        # what the VLM's processor refuses is unreadable here, as describe skips it: its ValueError stopped the job
        refused = [too_elongated(*im.size) for im in images]
        failed.extend((it["source"], why) for it, why in zip(good, refused) if why)
        good, images = [it for it, why in zip(good, refused) if not why], [
            im for im, why in zip(images, refused) if not why]
    if describe is not None and good:
        for it, text in zip(good, describe(images)):
            it["description"], it["written_by"] = text, writer
        if reads_text:
            require_descriptions(model_uri, good)
    rows = []
    if good:
        records = model.predict(_request_frame(good), params=params).to_dict("records")
        if len(records) != len(good):  # zipped, the inputs past its last row would be dropped without a word
            raise PredictError(f"{model_uri} answered {len(records)} rows for {len(good)} inputs (first: "
                               f"{good[0]['source']}): a row per input is expected, and its rows cannot be matched "
                               f"to the inputs; no predictions written for them")
        for it, rec in zip(good, records):
            rec["source"] = it["source"]
            rec["slide_id"] = rec.get("slide_id") or None
            # the label a labelled shard gives the input, beside the prediction (a label set for a label set). A
            # multi-label sample's `label` is only the first of its set: a single-label model's row gets the set,
            # and no single truth that `agreement` would score it against. A single-label sample's label is kept
            # for a multi-label model's row too (`agreement` compares its label set with {true_label})
            if it.get("true_labels") is not None:
                rec["true_labels"] = "|".join(it["true_labels"])
            elif it.get("true_label") is not None:
                rec["true_label"] = it["true_label"]
            rows.append(_plain(rec))
    for it in chunk:
        it.pop("data", None)
    return rows, failed, good


def predict_to_file(model_uri: str, inputs: Sequence[Path], out: Path, *args: Any, **kwargs: Any) -> Dict[str, Any]:
    """`_predict_to_file` (its arguments and what it returns) while the shard sets among the inputs are held with a
    read lock: no build rewrites them while their samples are predicted, and a set being written is not read."""
    with ExitStack() as reading:
        for folder in shard_sets_read(inputs):
            reading.enter_context(ReadLock(folder, "predict"))
        return _predict_to_file(model_uri, inputs, out, *args, **kwargs)


def _predict_to_file(model_uri: str, inputs: Sequence[Path], out: Path, descriptions: Optional[Path] = None,
                    vlm: Optional[str] = None, adapter: Optional[Path] = None, split: Optional[str] = None,
                    batch_size: int = 32, tracking_uri: Optional[str] = None, top_k: Optional[int] = None,
                    threshold: Optional[float] = None, description_column: str = "description",
                    slide_column: Optional[str] = None, chunk_size: int = PREDICT_CHUNK,
                    vlm_config: Optional[Any] = None) -> Dict[str, Any]:
    """Predict every readable input and write `out` (+ `<out>.slides.<ext>` when slide ids are known).
    `descriptions` rows are matched to the images by path (`data.description_table`), their text read from
    `description_column`, their slide ids from `slide_column` (default `slide_id`).
    `top_k` / `threshold` choose a multi-label model's predicted label set (refused for single-label models).
    An interrupted run of the same job resumes after its last finished chunk (`journal.py`).

    Returns {"predicted": n, "failed": [(input, reason)], "out": path, "slides_out": path|None, "warnings": [..],
    "resumed": inputs an earlier run had done, "skipped_out": the file listing `failed` (`skipped.write_skipped`;
    None when every input was read), "agreement": `agreement.agreement` (None without labelled inputs)}:
    `warnings` names the inputs whose descriptions have another writer than the model's training text.
    """
    out = Path(out)
    _check_arguments(out, top_k, threshold, chunk_size)
    if adapter is not None and not vlm:  # (else ignored: the images would go undescribed)
        raise PredictError(f"--adapter {adapter} is the LoRA adapter of the VLM that describes the images: give "
                           f"--vlm MODEL with it")
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():  # as `describe` checks it;
        # here, not where the VLM loads: after the model's load (a registry download) and the journal's claim
        raise PredictError(f"--adapter {adapter}: no such folder" if not Path(adapter).is_dir() else
                           f"--adapter {adapter}: no adapter_config.json (a peft adapter folder is expected)")
    if descriptions is None and (slide_column or description_column != "description"):  # (else ignored)
        flag = f"--slide-column {slide_column}" if slide_column else f"--description-column {description_column}"
        raise PredictError(f"{flag} names a column of --descriptions FILE, and none is given: give the file, or "
                           f"leave {flag.split()[0]} out (shard sets carry their own descriptions and slide ids)")
    table = DescriptionTable.read(descriptions, description_column, slide_column, require_text=not vlm) \
        if descriptions else None
    items, failed = collect_inputs(inputs, split)
    if not items:  # (a typo in the only path: no model loaded, no empty predictions file written)
        raise PredictError("nothing to predict: " + "; ".join(f"{source}: {why}" for source, why in failed)
                           if failed else f"nothing to predict: {', '.join(map(str, inputs))} hold(s) no images "
                           f"or shard samples" if inputs else "nothing to predict: no inputs given")
    # matched before the model loads: a row that fits two images is refused in seconds, not after minutes
    matched = table.match([(it["key"], it.get("path")) for it in items]) if table else []
    for it, row in zip(items, matched):
        if row:
            if not vlm:  # with --vlm the VLM writes every description; the table gives the slides
                it["description"], it["written_by"] = table.description(row), None
            it["slide_id"] = it.get("slide_id") or table.slide_id(row)
    unslid = [it for it in items if not it.get("slide_id")] if table else []
    if unslid and (slide_column or any(row and table.slide_id(row) for row in matched)):  # slides, not to these
        log.warning("%d of %d input(s) have no slide id (no row of %s, or an empty '%s' cell; first: %s): "
                    "predicted, but left out of the per-slide aggregates", len(unslid), len(items), descriptions,
                    table.slide_column, unslid[0]["source"])
    journal = PredictJournal(out).lock()  # before the model loads: a second job into `out` is refused at once
    written = False
    try:
        model = load_model(model_uri, tracking_uri)
        model_meta = (getattr(model.metadata, "metadata", None) or {}) if getattr(model, "metadata", None) else {}
        multilabel = model_meta.get("task") == "multilabel"
        params: Dict[str, Any] = {"batch_size": batch_size}
        if multilabel:
            n_labels = len(model_meta.get("classes") or [])  # (0: a model registered without its classes)
            if top_k is not None and n_labels and top_k > n_labels:  # it would predict every label as "top-k"
                raise PredictError(f"--top-k {top_k} is more than the {n_labels} labels {model_uri} predicts; "
                                   f"give at most {n_labels}")
            if threshold is not None and model_meta.get("zero_shot"):  # (the served model refuses it too, mid-run)
                raise PredictError(f"--threshold {threshold:g}: {model_uri} is a zero-shot CLIP model, whose scores "
                                   f"are logit_scale x cosine similarity, not probabilities (every label's sigmoid "
                                   f"is near 1 and would pass); choose its labels by --top-k (default its own)")
            params.update({"top_k": top_k or 0, "threshold": threshold or 0.0})
        elif top_k is not None or threshold is not None:
            raise PredictError(f"--top-k / --threshold choose the label set of a multi-label model; {model_uri} "
                               f"predicts one class per image (its `label` column)")
        reads_text = bool(model_meta.get("reads_text"))  # (models registered before this key existed: not checked)
        if vlm and model_meta.get("reads_text") is False:  # (else hours of descriptions the model ignores)
            raise PredictError(f"--vlm {vlm} writes the descriptions a model reads with each image, and {model_uri} "
                               f"reads no text (an image-only model): leave --vlm{' and --adapter' if adapter else ''} "
                               f"out")
        if reads_text and not vlm:
            require_descriptions(model_uri, items, descriptions)  # before a single image is decoded
        writer, vlm_cfg = None, None
        if vlm and items:
            vlm_cfg = vlm_settings(vlm, adapter, vlm_config)
            writer = vlm_writer(vlm, adapter, vlm_cfg)
        sets = shard_sets_read(inputs)
        identity = model_identity(model_uri, model, tracking_uri)
        done = journal.resume({
            "model": model_uri, "model_uuid": identity["model_uuid"],
            "inputs": digest([it["source"] for it in items]), "n_inputs": len(items), "split": split,
            # a set rebuilt in place keeps its names: its manifest (the shards' sha256) tells the builds apart
            "shard_sets": [file_digest(folder / "manifest.json") for folder in sets],
            "files": files_digest(_loose_files(items, sets)),
            "descriptions": file_digest(descriptions), "description_column": description_column,
            "slide_column": slide_column, "vlm": writer_job(writer), "top_k": top_k, "threshold": threshold})
        warn_if_other_model(out, identity)
        if done.upto:
            log.info("resuming: %d of %d inputs were predicted by an interrupted run (%s)", done.upto, len(items),
                     journal.folder)
        describe = _vlm_describer(vlm, adapter, vlm_cfg) if vlm and len(items) > done.upto else None
        rows, writers = list(done.rows), list(done.writers)
        failed.extend(done.failed)
        bar = progress_bar(total=len(items), initial=done.upto, desc="predict", unit="img")
        # A chunk at a time (decoded, described, predicted, journaled, its image bytes dropped): memory stays
        # bounded by the chunk, whatever the inputs hold (a whole slide set), the bar moves as the work does, and a
        # kill loses at most the chunk in flight.
        stream, upto = with_image_bytes(items[done.upto:]), done.upto
        while True:
            chunk = list(islice(stream, chunk_size))
            if not chunk:
                break
            chunk_rows, chunk_failed, good = _predict_chunk(model, model_uri, params, chunk, describe, writer,
                                                            reads_text)
            upto += len(chunk)
            journal.append(upto, chunk_rows, chunk_failed, _writers(good))
            rows.extend(chunk_rows)
            failed.extend(chunk_failed)
            writers.extend({"written_by": it.get("written_by")} for it in good)
            bar.update(len(chunk))
        bar.close()
        warnings = text_writer_warnings(model_uri, model_meta, writers)
        classes = [k[len("prob_"):] for k in (rows[0] if rows else {}) if k.startswith("prob_")]
        model_record_file(out).unlink(missing_ok=True)  # (a write cut short leaves no record naming another model)
        _write(rows, out, _output_columns(model) if not rows else ())
        write_model_record(out, identity)
        slides_out = None
        slide_ids = [it.get("slide_id") for it in items]  # (a slide of only unreadable patches keeps its row)
        if multilabel:
            agg = multilabel_slide_aggregates(rows, classes, top_k or int(model_meta.get("top_k", 1)),
                                              threshold or 0.0, slide_ids)
        else:
            agg = slide_aggregates(rows, classes, slide_ids)
        slides_file = side_file(out, "slides")
        if agg:
            slides_out = slides_file
            _write(agg, slides_out)
        else:  # an earlier run's aggregates of other inputs would read as this run's
            slides_file.unlink(missing_ok=True)
        agreed = agreement(rows, agg, classes, multilabel)
        skipped_out = write_skipped(out, failed)
        written = True
    finally:
        journal.finish() if written else journal.release()
    return {"predicted": len(rows), "failed": failed, "out": str(out), "warnings": warnings,
            "slides_out": str(slides_out) if slides_out else None, "resumed": done.upto, "agreement": agreed,
            "skipped_out": str(skipped_out) if skipped_out else None}
