"""The shape of one search-space distribution (`tuning.space`'s `load_space` checks every key with it): the
arguments Ray needs, and no value listed twice; and of the space's keys (`check_key_names`)."""
from __future__ import annotations

import math
from typing import Any, Iterable, List

from ..core.errors import ConfigError


class SpaceError(ConfigError):
    """A search-space file is malformed or gives invalid configs; the message names the file and key."""


def check_shape(source: Any, key: str, kind: str, val: Any, scaled: bool = False) -> None:
    """The distribution's arguments, so Ray never sees a range it cannot sample (`scaled`: `scale: epochs`, whose
    quniform Ray never sees: it samples the epochs of low + i*q)."""
    if kind in ("choice", "grid"):
        if not isinstance(val, list) or not val:
            raise SpaceError(f"{source}: '{key}': {kind} needs a non-empty list of values (got {val!r})")
        _refuse_repeats(source, key, kind, val)
        return
    size = 3 if kind == "quniform" else 2
    if not isinstance(val, list) or len(val) != size or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in val):
        raise SpaceError(f"{source}: '{key}': {kind} needs [{'low, high, q' if size == 3 else 'low, high'}] numbers "
                         f"(got {val!r}; YAML reads 1e-4 as text, write 1.0e-4)")
    low, high = val[0], val[1]
    if kind == "randint" and not all(isinstance(v, int) for v in (low, high)):
        raise SpaceError(f"{source}: '{key}': randint needs integer ends (got {val!r})")
    if not low < high:
        raise SpaceError(f"{source}: '{key}': {kind} needs low < high (got low end {low!r}, high end {high!r})")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"{source}: '{key}': loguniform needs a positive low end (got low end {low!r})")
    if kind == "quniform" and not val[2] > 0:
        raise SpaceError(f"{source}: '{key}': quniform needs a positive step q (got q {val[2]!r})")
    if kind == "quniform" and not scaled and not all(math.isclose(v / val[2], round(v / val[2])) for v in val[:2]):
        raise SpaceError(f"{source}: '{key}': quniform needs ends that are whole multiples of its step q (got low end "
                         f"{low!r}, high end {high!r}, q {val[2]!r}): Ray refuses the others")


def _refuse_repeats(source: Any, key: str, kind: str, values: List[Any]) -> None:
    """A value a choice or grid lists twice: a grid runs every value, so its trials ran twice; a choice sampled it
    twice as often. Numbers are compared by value (`1.0e-3` and `0.001`), other values as written."""
    seen = []
    for value in values:
        same = ("number", float(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else (
            type(value).__name__, repr(value))
        if same in seen:
            raise SpaceError(f"{source}: '{key}': {kind} holds {value!r} twice: {kind} values must differ (a repeat "
                             f"runs the same trials again); drop the repeat")
        seen.append(same)


def check_key_names(source: Any, keys: Iterable[Any]) -> None:
    """Every key is a dotted text key (YAML reads `1:`, `on:`, `null:` as a number, a boolean, None: an
    AttributeError traceback), and none lies inside another (`fusion.curriculum.phases.1` and
    `fusion.curriculum.phases.1.start_epoch`) or names the same setting (`phases.01` and `phases.1`): a trial applied
    both, the later replacing what the other set, so one key's sampled value (Ray's table, trials.csv, best.yaml) was
    not the one trained with."""
    keys = list(keys)
    for key in keys:
        if not isinstance(key, str):
            raise SpaceError(f"{source}: params key {key!r} is not a dotted config key (YAML reads it as "
                             f"{type(key).__name__}): write the key as text, e.g. train.lr")
    # a list index is a number: `phases.01` is `phases.1`
    parts = {key: tuple(str(int(p)) if p.isdecimal() else p for p in key.split(".")) for key in keys}
    for i, key in enumerate(keys):
        same = next((other for other in keys[:i] if parts[other] == parts[key]), None)
        if same is not None:
            raise SpaceError(f"{source}: '{key}' and '{same}' name the same setting (a list index is a number): a "
                             f"trial would set one over the other, so a sampled value would not be the one trained "
                             f"with; keep one of them")
        outer = next((other for other in keys if parts[key][:len(parts[other])] == parts[other]
                      and len(parts[key]) > len(parts[other])), None)
        if outer is not None:
            raise SpaceError(f"{source}: '{key}' lies inside '{outer}', also in the space: a trial would set one "
                             f"over the other, so a sampled value would not be the one trained with; keep one of them")
