"""The rows a study's config cannot train, found before the first row trains: a recipe's variants module may name
them (`unfit(row_config) -> reason or None`); without `--rows` they are left out and said so, named in `--rows`
they are refused. Before, such a row failed when its turn came, after the rows before it had trained."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple

from ..config import Config
from ..core.errors import ConfigError

log = logging.getLogger(__name__)


def leave_out_unfit(chosen: List[str], configs: Dict[Tuple[str, int], Config], variants: Any,
                    asked: bool) -> Tuple[List[str], Dict[Tuple[str, int], Config]]:
    """(`chosen`, `configs`) without the rows `variants.unfit` finds in their first seed's config; a ConfigError
    when `asked` (the rows were named in --rows) or no row is left."""
    check = getattr(variants, "unfit", None)
    unfit: Dict[str, str] = {}
    for (row, _), row_cfg in configs.items():
        if check is not None and row not in unfit:
            why = check(row_cfg)
            if why:
                unfit[row] = why
    if not unfit:
        return chosen, configs
    listing = "; ".join(f"row {row}: {why}" for row, why in unfit.items())
    kept = [row for row in chosen if row not in unfit]
    if asked or not kept:
        raise ConfigError(f"--rows: this config cannot train {listing}; leave {'it' if len(unfit) == 1 else 'them'} "
                          f"out (the rows are {', '.join(chosen)})")
    log.info("row(s) %s left out, this config cannot train them: %s", ", ".join(unfit), listing)
    return kept, {key: row_cfg for key, row_cfg in configs.items() if key[0] not in unfit}
