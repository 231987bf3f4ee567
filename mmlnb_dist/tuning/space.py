"""Search spaces: a YAML file of dotted config keys and their distributions.

    description: what this space explores
    params:
      train.lr: {loguniform: [1.0e-4, 3.0e-3]}
      train.curriculum.schedule: {choice: [step, linear, cosine]}
      train.curriculum.ramp_start: {uniform: [0.1, 0.3], scale: epochs}   # a fraction of train.epochs
      vlm.lora.r: {choice: [4, 8, 16, 32, 64]}
      train.global_batch_size: {grid: [16, 32]}   # grid values (also used by searcher=grid)

Distributions: uniform, loguniform, quniform [lo, hi, q], randint [lo, hi) , choice [...], grid [...].
`scale: epochs` multiplies the sampled value by `train.epochs` and rounds it (at least 1), so one space fits the 9-epoch
demo and the 150-epoch paper profile.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple, Union

import yaml

from ..core.errors import UserError

DISTRIBUTIONS = ("uniform", "loguniform", "quniform", "randint", "choice", "grid")


class SpaceError(UserError, ValueError):
    """A search-space file is malformed; the message names the file and key."""


def load_space(path: Union[str, Path]) -> Dict[str, Dict[str, Any]]:
    """Read and validate a space file; returns {dotted_key: spec}."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"search space file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    params = raw.get("params") if isinstance(raw, dict) else None
    if not isinstance(params, dict) or not params:
        raise SpaceError(f"{path}: needs a non-empty 'params' mapping of dotted config keys")
    for key, spec in params.items():
        kinds = [k for k in (spec or {}) if k in DISTRIBUTIONS] if isinstance(spec, dict) else []
        if len(kinds) != 1:
            raise SpaceError(f"{path}: '{key}' needs exactly one of {', '.join(DISTRIBUTIONS)} (got {spec!r})")
        extra = set(spec) - set(DISTRIBUTIONS) - {"scale"}
        if extra:
            raise SpaceError(f"{path}: '{key}' has unknown fields {sorted(extra)}")
        if spec.get("scale") not in (None, "epochs"):
            raise SpaceError(f"{path}: '{key}': scale must be 'epochs'")
    check_keys(params, path)
    return params


def check_keys(params: Mapping[str, Any], source: Any = "space") -> None:
    """Every key must be a config field (list indices allowed), so typos fail before Ray starts."""
    from ..config import Config
    from ..core.config import Section

    for key in params:
        model: Any = Config
        for part in key.split("."):
            if part.isdigit():
                continue
            fields = getattr(model, "model_fields", {})
            if part not in fields:
                raise SpaceError(f"{source}: '{key}' is not a config key ('{part}' unknown)")
            ann = fields[part].annotation
            args = getattr(ann, "__args__", ())
            model = ann if isinstance(ann, type) and issubclass(ann, Section) else \
                next((a for a in args if isinstance(a, type) and issubclass(a, Section)), None)


def to_tune_space(params: Mapping[str, Dict[str, Any]], searcher: str) -> Dict[str, Any]:
    """Ray Tune's param_space. For the grid searcher every key becomes a grid (choice/grid values)."""
    from ray import tune

    space: Dict[str, Any] = {}
    for key, spec in params.items():
        kind = next(k for k in spec if k in DISTRIBUTIONS)
        val = spec[kind]
        if searcher == "grid":
            if kind not in ("choice", "grid"):
                raise SpaceError(f"searcher=grid needs 'choice' or 'grid' values for '{key}' (got {kind})")
            space[key] = tune.grid_search(list(val))
            continue
        if kind == "uniform":
            space[key] = tune.uniform(*val)
        elif kind == "loguniform":
            space[key] = tune.loguniform(*val)
        elif kind == "quniform":
            space[key] = tune.quniform(*val)
        elif kind == "randint":
            space[key] = tune.randint(*val)
        elif kind == "choice" or kind == "grid":
            # grid values under a sampling searcher are sampled like a choice (Optuna cannot take grids)
            space[key] = tune.choice(list(val))
    return space


def _set_path(raw: Dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            node = node[int(part)]
            continue
        if part not in node or node[part] is None:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def apply_params(cfg_dict: Dict[str, Any], sampled: Mapping[str, Any],
                 space: Mapping[str, Dict[str, Any]]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The config dict with sampled values applied (after `scale`); returns (new dict, applied values)."""
    out = copy.deepcopy(cfg_dict)
    epochs = int(out.get("train", {}).get("epochs", 1))
    applied = {}
    for key, value in sampled.items():
        spec = space.get(key, {})
        if spec.get("scale") == "epochs":
            value = max(1, int(round(float(value) * epochs)))  # epoch 0 belongs to the first phase
        if hasattr(value, "item"):  # numpy scalars from the searchers
            value = value.item()
        _set_path(out, key, value)
        applied[key] = value
    return out, applied


def describe(params: Mapping[str, Dict[str, Any]]) -> List[str]:
    return [f"{k}: {v}" for k, v in params.items()]
