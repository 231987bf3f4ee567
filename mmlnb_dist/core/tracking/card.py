"""The model card of a registered version (Markdown, logged as MODEL_CARD.md and kept, cut to fit, as the version's
description): the recipe's sections, data lineage, the exported checkpoint's metrics, environment and config."""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
"""The resolved config a run saved in its folder at start and logged as an MLflow artifact (`loggers`)."""


def run_config_text(client: Any, run: Any) -> Optional[str]:
    """The config run `run` trained with: `<run_dir tag>/config.yaml` while that folder is still the run's (its
    tracking record names no other run), else the copy the run logged as an artifact (a run folder moved or deleted
    since training, another machine's, or taken over by a later run of the same run.name, whose config it now
    holds), None when neither is found."""
    from .journal import recorded_run

    tagged = run.data.tags.get("run_dir")
    owner = recorded_run(Path(tagged), run.data.tags.get("stage", "train")).get("run_id") if tagged else None
    if tagged and (Path(tagged) / CONFIG_FILE).is_file() and owner in (None, run.info.run_id):
        return (Path(tagged) / CONFIG_FILE).read_text()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return Path(client.download_artifacts(run.info.run_id, CONFIG_FILE, tmp)).read_text()
        except Exception as err:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            log.info("the model card has no config: run %s's folder and its config.yaml artifact are gone (%s)",
                     run.info.run_id, err)
            return None


def model_card(run: Any, package: Any, metric: str, config_text: Optional[str] = None) -> str:
    """A Markdown model card: the recipe's sections (`package`, a registry `ModelPackage`), data lineage (dataset
    inputs), metrics, environment and `config_text` (`run_config_text`; no Config section when None)."""
    lines = [f"# {package.title} from run `{run.info.run_id}` ({run.info.run_name})", ""]
    for title, body in package.card_sections.items():
        lines += [f"## {title}", body.rstrip(), ""]
    lines.append("## Data")
    for ds_input in getattr(run.inputs, "dataset_inputs", None) or []:
        ds = ds_input.dataset
        ctx = next((t.value for t in ds_input.tags if t.key == "mlflow.data.context"), "?")
        profile = json.loads(ds.profile) if ds.profile else {}
        lines.append(f"- {ctx}: `{ds.name}` digest `{ds.digest}`, {profile.get('num_samples')} samples, "
                     f"class counts {profile.get('class_counts')}, source {ds.source}")
        if profile.get("provenance"):
            lines.append(f"  - provenance: `{json.dumps(profile['provenance'])[:500]}`")
    lines += ["", f"## Metrics (selection metric: `{metric}`)"]
    # the registered model is the exported (best) checkpoint: its `best/*` values, not the last epoch's
    best = {k: v for k, v in run.data.metrics.items() if k.startswith(("best/val/", "best/test/"))}
    if best:
        lines.append("Of the exported checkpoint (the best validation epoch), the model registered here:")
    else:
        lines.append("The run's last logged values (it logged no `best/*` of an exported checkpoint):")
        best = {k: v for k, v in run.data.metrics.items() if k.startswith(("val/", "test/", "train/", "train_epoch/"))}
    lines += [f"- {k}: {v:.4f}" for k, v in sorted(best.items())]
    env = {k: v for k, v in run.data.tags.items() if k.startswith(("version.", "git.", "device"))}
    lines += ["", "## Environment"] + [f"- {k}: {v}" for k, v in sorted(env.items())]
    if config_text is not None:
        lines += ["", "## Config", "```yaml", config_text.rstrip(), "```"]
    return "\n".join(lines) + "\n"


CARD_CUT = "\n… (truncated; the full card is MODEL_CARD.md in the model's artifacts)\n"


def version_description(card: str, limit: int = 5000) -> str:
    """The model card as a version description (the registry keeps `limit` characters): whole, or cut at the
    last line that fits, with a marker saying where the rest is, never mid-key."""
    if len(card) <= limit:
        return card
    kept = card[:limit - len(CARD_CUT)]
    return kept[:kept.rfind("\n") + 1 or len(kept)].rstrip("\n") + CARD_CUT
