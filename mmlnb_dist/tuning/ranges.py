"""A search space against the base config, before Ray starts: every value a trial could be given must build a config
that validates and that the trial recipe's own config check (`check`) accepts, so a value the config refuses fails
the search at its start instead of failing the trials that draw it.

Checked: every end of every range and every choice, alone and paired with every end of every other key (the other
keys at their midpoints), and every whole number of an integer range (randint; quniform on an integer field) of at
most `INTERIOR_VALUES` values, alone: its ends can pass where the numbers between fail (a global batch of 16 and
32 splits into micro batches of 4, 17 does not).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from ..core.errors import ConfigError
from .shapes import SpaceError
from .space import DISTRIBUTIONS, _epochs, _takes_integers_only, apply_params, epochs_of, range_ends

Check = Optional[Callable[[Any], None]]

INTERIOR_VALUES = 64
"""The most whole numbers of one integer range checked one by one (a wider range has its ends checked only)."""


def _midpoint(spec: Mapping[str, Any]) -> Any:
    """A value well inside the range (geometric middle of a loguniform), the first choice."""
    kind = next(k for k in spec if k in DISTRIBUTIONS)
    val = spec[kind]
    if kind in ("choice", "grid"):
        return val[0]
    if kind == "randint":
        return (val[0] + val[1] - 1) // 2
    if kind == "loguniform":
        return math.sqrt(val[0] * val[1])
    mid = (val[0] + val[1]) / 2
    return round(mid / val[2]) * val[2] if kind == "quniform" else mid


def check_ranges(params: Mapping[str, Dict[str, Any]], base: Dict[str, Any], source: Any = "space",
                 check: Check = None) -> None:
    """Every end of every range and every choice, alone and paired with every end of every other key (the other
    keys at their midpoints), must give a valid config through the trial's own path (`apply_params`, then the
    config validation and `check`). Pairs catch ordering constraints (ramp_end >= ramp_start, increasing phase
    starts); the whole numbers of a short integer range are checked alone too (`_interior`).
    A failure is a SpaceError naming the key(s), the end(s) and the config's own reason; where `scale: epochs`
    keys are involved and more epochs would give a valid space (fractions that round to the same epoch: three
    phases in 2 epochs), it names train.epochs and the fewest epochs the space needs."""
    for picked in _picks(params):
        try:
            _validate(base, params, picked, source, check)
        except SpaceError as err:
            scaled = [key for key in ([key for key, _ in picked] or list(params))
                      if params[key].get("scale") == "epochs"]
            fewest = _fewest_epochs(params, base, check) if scaled else None
            if fewest is None:
                raise
            epochs = _epochs(base)
            detail = str(err).removeprefix(f"{source}: ")
            raise SpaceError(f"{source}: train.epochs={epochs} is too few for this space: its fractions of "
                             f"train.epochs ({', '.join(scaled)}) round to colliding epochs. Set "
                             f"train.epochs={fewest} or more, or narrow or drop those keys. With "
                             f"train.epochs={epochs}, {detail}") from None


def _picks(params: Mapping[str, Dict[str, Any]]) -> Iterator[List[Tuple[str, Tuple[str, Any]]]]:
    """The (key, (which end, value)) sets `check_ranges` validates: none (all midpoints), each end alone first (a
    lone bad end is named alone), the numbers between an integer range's ends alone, then every pair of ends of
    two keys."""
    yield []
    keys = list(params)
    for key in keys:
        for end in range_ends(params[key]):
            yield [(key, end)]
    for key in keys:
        for value in _interior(key, params[key]):
            yield [(key, ("value", value))]
    for i, key in enumerate(keys):
        for other in keys[i + 1:]:
            for end in range_ends(params[key]):
                for other_end in range_ends(params[other]):
                    yield [(key, end), (other, other_end)]


def _interior(key: str, spec: Mapping[str, Any]) -> List[int]:
    """The whole numbers strictly between the ends of an integer range a trial may draw (randint; quniform on an
    integer field, in steps of q), when there are at most `INTERIOR_VALUES`; [] otherwise (and for `scale: epochs`,
    whose epochs Ray draws between ends that are checked)."""
    from ..config import Config
    from ..core.config import field_annotation

    kind = next(k for k in spec if k in DISTRIBUTIONS)
    val = spec[kind]
    if spec.get("scale") == "epochs" or kind not in ("randint", "quniform"):
        return []
    if kind == "quniform" and not _takes_integers_only(field_annotation(Config, key)):
        return []
    low, high, step = (int(val[0]), int(val[1]) - 1, 1) if kind == "randint" else (int(val[0]), int(val[1]), int(val[2]))
    values = list(range(low + step, high, step))
    return values if len(values) <= INTERIOR_VALUES else []


def _fewest_epochs(params: Mapping[str, Dict[str, Any]], base: Dict[str, Any], check: Check = None) -> Optional[int]:
    """The fewest epochs above the base config's at which the whole space validates, None if none up to twice
    as many (at least 20): the hint for a space whose scaled keys have too few epochs to spread over. Only on the
    error path, so its cost (a full check per candidate, ~50 ms) is paid by a search that is refused anyway."""
    epochs = _epochs(base)
    for candidate in range(epochs + 1, max(2 * epochs, 20) + 1):
        more = {**base, "train": {**base.get("train", {}), "epochs": candidate}}
        try:
            for picked in _picks(params):
                _validate(more, params, picked, "space", check)
        except SpaceError:
            continue
        return candidate
    return None


def _validate(base: Dict[str, Any], params: Mapping[str, Dict[str, Any]],
              picked: List[Tuple[str, Tuple[str, Any]]], source: Any, check: Check = None) -> None:
    from ..config import config_from_dict

    epochs = _epochs(base)
    typical = {k: _midpoint(v) for k, v in params.items()}
    sampled = {key: epochs_of(params[key], value, epochs)
               for key, value in {**typical, **{key: value for key, (_, value) in picked}}.items()}
    try:  # a list index the base config has no entry for (the key itself is a field: `check_keys`)
        cfg_dict, applied = apply_params(base, sampled, params)
    except ConfigError as err:
        raise SpaceError(f"{source}: {err}") from None
    try:
        cfg = config_from_dict(cfg_dict, f"{source}")
        if check is not None:  # what the trial's recipe refuses of a config alone (a batch that does not split)
            check(cfg)
    except ConfigError as err:
        if not picked:
            what = "its midpoint (every range at its middle, every choice at its first value)"
        else:
            what = " together with ".join(
                f"'{key}' {which} {value!r}" + (f" (x train.epochs -> {applied[key]})"
                                                if params[key].get("scale") == "epochs" else "")
                for key, (which, value) in picked)
        raise SpaceError(f"{source}: the space gives an invalid config at {what}: {err}. Narrow the range in the "
                         f"space file (or change the base config) so every value it can sample is valid") from None




def trial_config_check(cfg: Any) -> Check:
    """The config check of the recipes a trial of `cfg`'s search runs (`check_config` of the recipe table: a batch
    that does not split over the trial's `tune.workers_per_trial` ranks, ...), for `load_space`; None for a recipe
    class outside the table, whose checks are not known."""
    from ..recipes import RECIPES, check_configs
    from .trial import PIPELINE_RECIPES

    names = PIPELINE_RECIPES.get(cfg.tune.recipe, (cfg.tune.recipe,))
    if not all(name in RECIPES for name in names):
        return None
    return lambda trial_cfg: check_configs(trial_cfg, cfg.tune.workers_per_trial, names)
