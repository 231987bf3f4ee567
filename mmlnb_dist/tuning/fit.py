"""Choice and grid values of a space that build no model on the search's config, left out before Ray starts.

A recipe's variants module may say why a config builds no model (`unfit(cfg) -> reason or None`, as `ablate`
uses for its rows). The shipped clip space offers `clip.model.fusion: sum`, which needs equal image and text
widths: on the clip-demo encoders (1280 vs 384) every trial drawing it failed inside Ray. Each value is checked
on the base config with only its own key changed; a key none of whose values builds is refused.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any, Dict

from .checks import SearchError
from .space import apply_params

log = logging.getLogger(__name__)


def leave_out_unfit_values(space: Dict[str, Dict[str, Any]], base: Dict[str, Any], recipe: str,
                           source: Any, note: str = "") -> Dict[str, Dict[str, Any]]:
    """`space` without the choice/grid values whose config the `recipe`'s `unfit` rejects (a warning names each,
    followed by `note`)."""
    from ..config import config_from_dict
    from ..recipes import RECIPES

    spec = RECIPES.get(recipe)
    module = importlib.import_module(spec.variants) if spec is not None and spec.variants else None
    unfit = getattr(module, "unfit", None)
    if unfit is None:
        return space
    kept: Dict[str, Dict[str, Any]] = {}
    for key, entry in space.items():
        kind = "choice" if "choice" in entry else "grid" if "grid" in entry else None
        if kind is None:
            kept[key] = entry
            continue
        fit, why = [], {}
        for value in entry[kind]:
            reason = unfit(config_from_dict(apply_params(base, {key: value}, space)[0], str(source)))
            if reason is None:
                fit.append(value)
            else:
                why[value] = reason
        if not fit:
            raise SearchError(f"{source}: no '{key}' {kind} value builds a model on this config: "
                              + "; ".join(f"{v}: {r}" for v, r in why.items()))
        for value, reason in why.items():
            log.warning("%s: '%s' %s value %s left out of this search (%s)%s", source, key, kind, value, reason, note)
        kept[key] = {**entry, kind: fit}
    return kept


def check_space_fits(cfg: Any) -> None:
    """`config validate`'s share of `leave_out_unfit_values`: the search space (`tune.space`, else the trial
    recipe's) with a key none of whose values builds a model on `cfg` is refused, as `tune` refuses it before Ray
    starts (validate said "ok" to it); values left out are warned about as `tune` does."""
    from .checks import default_space
    from .space import load_space, resolve_space

    source = resolve_space(cfg.tune.space or default_space(cfg.tune.recipe))
    base = cfg.model_dump(mode="json")
    # said to a user who may only train: the warning is about a later `tune`, not about this config
    leave_out_unfit_values(load_space(source, base), base, cfg.tune.recipe, source,
                           note="; this concerns `mmlnb-dist tune` only: train and the pipeline use the config as is")
