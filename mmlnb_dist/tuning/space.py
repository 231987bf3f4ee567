"""Search spaces: a YAML file of dotted config keys and their distributions.

    description: what this space explores
    params:
      train.lr: {loguniform: [1.0e-4, 3.0e-3]}
      train.curriculum.schedule: {choice: [step, linear, cosine]}
      train.curriculum.ramp_start: {uniform: [0.1, 0.3], scale: epochs}   # a fraction of train.epochs
      vlm.lora.r: {choice: [4, 8, 16, 32, 64]}
      train.global_batch_size: {grid: [16, 32]}   # grid values (also used by searcher=grid)

Distributions: uniform, loguniform, quniform [lo, hi, q] (q > 0; unscaled: ends multiples of q; on an integer field
sampled as whole numbers, Ray's qrandint), randint [lo, hi), choice [...], grid [...].
`scale: epochs` makes the values fractions of `train.epochs`, so one space fits the 9-epoch demo and the 150-epoch
paper profile. Ray samples the whole epochs they give (`epochs_of`: times `train.epochs`, halves up, at least 1): a
range becomes an integer range between its ends' epochs (uniform: randint, loguniform: lograndint), a choice, grid
or quniform the distinct epochs of its values. So Ray's trial table, its best-trial line and the searcher's model
hold the epochs a trial trains with, not fractions many of which train the same.

The shipped spaces are package data (`mmlnb_dist/tuning/spaces/`; `tune/spaces` links there in a source checkout):
`resolve_space` finds them by name (`curriculum`) or checkout path (`tune/spaces/curriculum.yaml`) from any folder.

`load_space(path, base)` also checks the space against the base config before Ray starts: both ends of every range
and every choice, alone and paired with every end of every other key (the rest at their midpoints), must give a
config that validates (and that `check`, the trial recipe's config check, accepts; `ranges`), so a range whose
high end is invalid fails at search start instead of in some trial. Without `base` it checks what the config model's field types alone decide (`check_types`): no uniform or
loguniform on an integer field, `scale: epochs` only on integer fields and only with numbers.
"""
from __future__ import annotations

import copy
import logging
import math
import types
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Tuple, Union

import yaml

from ..core.errors import ConfigError
from ..core.files import load_yaml
from .shapes import SpaceError, check_key_names, check_shape

log = logging.getLogger(__name__)

DISTRIBUTIONS = ("uniform", "loguniform", "quniform", "randint", "choice", "grid")


SPACES_DIR = Path(__file__).resolve().parent / "spaces"
"""The shipped search spaces (package data; `tune/spaces` links here in a source checkout)."""


def shipped_spaces() -> List[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def resolve_space(path: Union[str, Path]) -> Path:
    """A space file as given, else a shipped space by name (`clip`, `clip.yaml`) or by its source checkout path
    (`tune/spaces/clip.yaml`), so `tune` works from any folder."""
    given = Path(path)
    if given.is_file():
        return given
    shipped = SPACES_DIR / (given.name if given.suffix in (".yaml", ".yml") else given.name + ".yaml")
    if shipped.is_file() and (len(given.parts) == 1 or given.parent.parts[-2:] == ("tune", "spaces")):
        return shipped
    if given.is_dir():  # it exists: "not found" sent the user looking for a typo
        raise SpaceError(f"search space {path} is a folder, not a file: give a space YAML file (e.g. "
                         f"{path}/<name>.yaml) or a shipped space's name ({', '.join(shipped_spaces())})")
    raise SpaceError(f"search space file {path} not found (from {Path.cwd()}); shipped spaces: "
                     f"{', '.join(shipped_spaces())} (give a name, e.g. --space curriculum)")


def load_space(path: Union[str, Path], base: Optional[Dict[str, Any]] = None,
               check: Optional[Callable[[Any], None]] = None) -> Dict[str, Dict[str, Any]]:
    """Read and validate a space file; returns {dotted_key: spec}. With `base` (the search's config as a dict)
    every range end and choice is also checked to give a valid config (`ranges.check_ranges`), and one `check`
    (the trial recipe's config check, `ranges.trial_config_check`) does not refuse."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"search space file not found: {path}")
    try:
        raw = load_yaml(path) or {}
    except yaml.YAMLError as err:
        raise SpaceError(f"search space file {path} cannot be read as YAML: {err}") from None
    unknown = sorted(str(k) for k in set(raw) - {"params", "description"}) if isinstance(raw, dict) else []
    if unknown:  # a sweep's metric or method beside the params ran the search on the defaults, silently
        fix = (" rename it 'params'" if unknown == ["parameters"] and "params" not in raw else
               " set the metric, mode, searcher and sample count as tune.metric, tune.mode, tune.searcher and "
               "tune.num_samples (overrides or the config's tune: section)")
        raise SpaceError(f"{path}: unknown top-level keys {unknown}: a space file holds 'params' and 'description' "
                         f"only;{fix}")
    params = raw.get("params") if isinstance(raw, dict) else None
    if not isinstance(params, dict) or not params:
        raise SpaceError(f"{path}: needs a non-empty 'params' mapping of dotted config keys")
    check_key_names(path, params)
    for key, spec in params.items():
        kinds = [k for k in (spec or {}) if k in DISTRIBUTIONS] if isinstance(spec, dict) else []
        if len(kinds) != 1:
            raise SpaceError(f"{path}: '{key}' needs exactly one of {', '.join(DISTRIBUTIONS)} (got {spec!r})")
        extra = set(spec) - set(DISTRIBUTIONS) - {"scale"}
        if extra:
            raise SpaceError(f"{path}: '{key}' has unknown fields {sorted(extra)}")
        if spec.get("scale") not in (None, "epochs"):
            raise SpaceError(f"{path}: '{key}': scale must be 'epochs'")
        check_shape(path, key, kinds[0], spec[kinds[0]], scaled=spec.get("scale") == "epochs")
        if spec.get("scale") == "epochs":
            _check_fractions(path, key, kinds[0], spec[kinds[0]])
    check_keys(params, path)
    check_types(params, path)
    scaled = [key for key, spec in params.items() if spec.get("scale") == "epochs"]
    if scaled and "train.epochs" in params:  # Ray samples their epochs before a trial's train.epochs is known
        raise SpaceError(f"{path}: {', '.join(scaled)} (scale: epochs) is sampled in epochs of the base config's "
                         f"train.epochs{'' if base is None else f'={_epochs(base)}'}, but the space varies "
                         f"train.epochs too: give those keys in epochs (no scale), or do not search train.epochs")
    if base is not None:
        from .ranges import check_ranges  # (it builds configs the way a trial does: `apply_params` below)

        check_scaled_epochs(params, _epochs(base), path)
        check_ranges(params, base, path, check)
    return params


def check_scaled_epochs(params: Mapping[str, Dict[str, Any]], epochs: int, source: Any = "space") -> None:
    """`scale: epochs` values rounding to one epoch train the same: a choice or grid of them searched fewer values
    than it lists, silently (refused, naming them and their epoch); a range of one epoch is a constant (warned)."""
    for key, spec in ((key, spec) for key, spec in params.items() if spec.get("scale") == "epochs"):
        kind = next(k for k in spec if k in DISTRIBUTIONS)
        if kind not in ("choice", "grid"):
            ends = {epochs_of(spec, v, epochs) for _, v in range_ends(spec)}
            if len(ends) == 1:
                log.warning("%s: '%s': %s %r (scale: epochs) gives epoch %d only of train.epochs=%d: every trial "
                            "trains the same value", source, key, kind, spec[kind], ends.pop(), epochs)
            continue
        by_epoch: Dict[int, List[Any]] = {}
        for value in spec[kind]:
            by_epoch.setdefault(epochs_of(spec, value, epochs), []).append(value)
        same = [f"{', '.join(repr(v) for v in values)} (scale: epochs) all give epoch {epoch}"
                for epoch, values in by_epoch.items() if len(values) > 1]
        if same:
            raise SpaceError(f"{source}: '{key}': {kind} values {'; '.join(same)} of train.epochs={epochs}: the "
                             f"search would try {len(by_epoch)} distinct value(s), not {len(spec[kind])}. Spread or "
                             f"drop the values, or raise train.epochs")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_fractions(source: Any, key: str, kind: str, val: List[Any]) -> None:
    """`scale: epochs` multiplies every value by `train.epochs`: only numbers from 0 to 1 (fractions) can be scaled."""
    odd = [v for v in val if not _is_number(v)]
    if odd:
        raise SpaceError(f"{source}: '{key}': scale: epochs needs numbers (fractions of train.epochs), but the "
                         f"{kind} holds {', '.join(repr(v) for v in odd)}: drop 'scale: epochs' for these values")
    beyond = [repr(v) for _, v in range_ends({kind: val}) if not 0 <= v <= 1]  # an epoch past the run, or below 1
    if beyond:
        raise SpaceError(f"{source}: '{key}': scale: epochs takes fractions of train.epochs from 0 to 1, but the "
                         f"{kind} holds {', '.join(beyond)}: give fractions (or the key in epochs, without scale)")


def _takes_integers_only(annotation: Any) -> bool:
    """A field whose values are whole numbers: int, a Literal of ints, or an Optional/Union of those (bool is
    not one: a range never fits it)."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_takes_integers_only(a) for a in args)
    if origin is Literal:
        return all(isinstance(a, int) and not isinstance(a, bool) for a in typing.get_args(annotation))
    return annotation is int


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def check_types(params: Mapping[str, Dict[str, Any]], source: Any = "space") -> None:
    """Ranges the field's type cannot take, told from the config model's annotation rather than from values
    tried: a uniform or loguniform on an integer field samples fractions (the ends and the midpoint of [16, 64]
    are whole, so `check_ranges` passes, then every trial fails on 37.07...), and `scale: epochs` makes whole
    epochs, which only an integer field takes. Keys must be known (`check_keys`)."""
    from ..config import Config
    from ..core.config import field_annotation

    for key, spec in params.items():
        kind = next(k for k in spec if k in DISTRIBUTIONS)
        val = spec[kind]
        annotation = field_annotation(Config, key)
        integer = _takes_integers_only(annotation)
        if spec.get("scale") == "epochs":
            if not integer:
                raise SpaceError(f"{source}: '{key}': scale: epochs gives whole numbers of epochs (an integer), "
                                 f"but '{key}' takes {_type_name(annotation)}: drop 'scale: epochs' (it is for "
                                 f"epoch fields such as fusion.curriculum.ramp_start)")
            continue  # sampled as whole epochs (`to_tune_space`)
        fractional = kind in ("uniform", "loguniform") or (kind == "quniform" and float(val[2]) != int(val[2]))
        if integer and fractional:
            low, high = math.ceil(val[0]), math.floor(val[1])
            raise SpaceError(
                f"{source}: '{key}' takes integers, but {kind} {val!r} samples fractional values, "
                f"which every trial would refuse: use randint: [{low}, {high + 1}] (its high end is exclusive), "
                f"a choice of values (e.g. choice: [16, 32, 64]), or quniform: [low, high, q] with a whole step q")


def range_ends(spec: Mapping[str, Any]) -> List[Tuple[str, Any]]:
    """[(which end, value)]: both ends of a numeric range (randint's high end is exclusive), every choice."""
    kind = next(k for k in spec if k in DISTRIBUTIONS)
    val = spec[kind]
    if kind in ("choice", "grid"):
        return [(f"{kind} {v!r}", v) for v in val]
    return [("low end", val[0]), ("high end", val[1] - 1 if kind == "randint" else val[1])]


def _epochs(base: Mapping[str, Any]) -> int:
    return int(base.get("train", {}).get("epochs", 1))


def check_keys(params: Mapping[str, Any], source: Any = "space") -> None:
    """Every key must be a config field (list entries by index), so typos fail before Ray starts."""
    from ..config import Config
    from ..core.config import field_annotation

    for key in params:
        try:
            field_annotation(Config, key)
        except ConfigError as err:
            raise SpaceError(f"{source}: {err}") from None


def epochs_of(spec: Mapping[str, Any], value: Any, epochs: int) -> Any:
    """A value of `spec` as a trial applies it: for `scale: epochs`, the fraction times `epochs`, rounded, at least
    1 (epoch 0 belongs to the first phase), halves up; any other value as it is."""
    if spec.get("scale") != "epochs":
        return value
    # halves round up, not to even (round(2.5) == 2): 0.35 and 0.5 of 5 epochs gave phases starting at 2 and 2
    return max(1, int(math.floor(float(value) * epochs + 0.5)))


def _epoch_values(spec: Mapping[str, Any], epochs: int) -> List[int]:
    """The distinct epochs a scaled choice, grid, quniform or randint gives, in order."""
    kind = next(k for k in spec if k in DISTRIBUTIONS)
    val = spec[kind]
    if kind == "quniform":
        steps = int(math.floor((val[1] - val[0]) / val[2] + 1e-9))
        val = [val[0] + i * val[2] for i in range(steps + 1)]
    elif kind == "randint":
        val = list(range(val[0], val[1]))
    return list(dict.fromkeys(epochs_of(spec, v, epochs) for v in val))


def to_tune_space(params: Mapping[str, Dict[str, Any]], searcher: str, epochs: int) -> Dict[str, Any]:
    """Ray Tune's param_space (`scale: epochs` keys in whole epochs of `epochs`, see the module's docstring). For
    the grid searcher every key becomes a grid (choice/grid values)."""
    from ray import tune

    from ..config import Config
    from ..core.config import field_annotation

    space: Dict[str, Any] = {}
    for key, spec in params.items():
        kind = next(k for k in spec if k in DISTRIBUTIONS)
        val = spec[kind]
        scaled = spec.get("scale") == "epochs"
        if searcher == "grid":
            if kind not in ("choice", "grid"):
                raise SpaceError(f"searcher=grid needs 'choice' or 'grid' values for '{key}' (got {kind})")
            space[key] = tune.grid_search(_epoch_values(spec, epochs) if scaled else list(val))
        elif scaled and kind in ("uniform", "loguniform"):
            low, high = epochs_of(spec, val[0], epochs), epochs_of(spec, val[1], epochs)
            space[key] = (tune.randint if kind == "uniform" else tune.lograndint)(low, high + 1)
        elif scaled:
            space[key] = tune.choice(_epoch_values(spec, epochs))
        elif kind == "uniform":
            space[key] = tune.uniform(*val)
        elif kind == "loguniform":
            space[key] = tune.loguniform(*val)
        elif kind == "quniform" and _takes_integers_only(field_annotation(Config, key)):
            space[key] = tune.qrandint(*(int(v) for v in val))  # whole numbers: quniform's floats said 32.0
        elif kind == "quniform":
            space[key] = tune.quniform(*val)
        elif kind == "randint":
            space[key] = tune.randint(*val)
        elif kind == "choice" or kind == "grid":
            # grid values under a sampling searcher are sampled like a choice (Optuna cannot take grids)
            space[key] = tune.choice(list(val))
    return space


def apply_params(cfg_dict: Dict[str, Any], sampled: Mapping[str, Any],
                 space: Mapping[str, Dict[str, Any]]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The config dict with the values Ray sampled applied (`scale: epochs` keys already in epochs, see
    `to_tune_space`); returns (new dict, applied values)."""
    from ..config import Config
    from ..core.config import set_dotted

    out = copy.deepcopy(cfg_dict)
    epochs = int(out.get("train", {}).get("epochs", 1))
    applied = {}
    for key, value in sampled.items():
        if hasattr(value, "item"):  # numpy scalars from the searchers
            value = value.item()
        if isinstance(value, float):  # a fraction: a search started before Ray sampled epochs, resumed
            value = epochs_of(space.get(key, {}), value, epochs)
        set_dotted(Config, out, key, value)
        applied[key] = value
    return out, applied
