"""The one owner of MLflow's limit on a param value: a longer value is cut, and the cut keys are named."""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional

log = logging.getLogger(__name__)
PARAM_VALUE_LIMIT = 6000
"""The most characters MLflow takes in a param value (a longer one fails the whole call)."""
TAG_VALUE_LIMIT = 8000
"""The most characters MLflow keeps in a run tag value: more than any param value, so a `param_changed.<key>` tag
holds the whole (cut-to-`PARAM_VALUE_LIMIT`) new value of a param."""
PARAM_CHANGED = "param_changed."
"""Tag prefix of a param's value changed on resume (MLflow keeps a param's first value): `param_changed.<key>`."""


def effective_params(run) -> Dict[str, str]:
    """Every param of `run` at the value it ended with (`effective_param`)."""
    return {**run.data.params, **{k[len(PARAM_CHANGED):]: v for k, v in run.data.tags.items()
                                  if k.startswith(PARAM_CHANGED) and k[len(PARAM_CHANGED):] in run.data.params}}


def effective_param(run, key: str) -> Optional[str]:
    """The value of param `key` that `run` ended with: the one a resume changed it to, else the one it logged."""
    return run.data.tags.get(PARAM_CHANGED + key, run.data.params.get(key))


def param_values(params: Mapping[str, Any], full_values: Optional[str] = None) -> Dict[str, str]:
    """`params` as MLflow param values (`str(value)`), each cut to `PARAM_VALUE_LIMIT` characters; a warning names
    every cut key and `full_values`, where the whole values are (the run's config.yaml artifact), when given."""
    values = {k: str(v) for k, v in params.items()}
    cut = sorted(k for k, v in values.items() if len(v) > PARAM_VALUE_LIMIT)
    if cut:
        log.warning("MLflow param value(s) longer than %d characters logged cut to that length: %s%s",
                    PARAM_VALUE_LIMIT, ", ".join(f"{k} ({len(values[k])} characters)" for k in cut),
                    f"; the full values are in {full_values}" if full_values else "")
    return {k: v[:PARAM_VALUE_LIMIT] for k, v in values.items()}
