"""`mmlnb-dist config show|explain|validate`."""
from __future__ import annotations

import argparse

from . import DEFAULT_PROFILE, add_config_args, load_from_args, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show, explain or validate a config")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    # Without --config, the profile `train` (and tune, ablate, ...) runs: checking the bare defaults said "ok" to
    # what `train` then refused.
    show = csub.add_parser("show", help="print the resolved config as YAML")
    add_config_args(show, DEFAULT_PROFILE)
    show.set_defaults(func=_show)
    val = csub.add_parser(
        "validate", help="load and validate a config; exit 2 with the reason if invalid",
        description="Load the config and check it as the recipes it runs would at start (encoder names, batch "
                    "splits, setting combinations, the DeepSpeed JSON). Data, model weights and the machine "
                    "(GPU, precision) are checked when a command starts.")
    add_config_args(val, DEFAULT_PROFILE)
    val.add_argument("--world-size", type=positive_int, default=1, metavar="N",
                     help="processes the job will run on: the batch must split over them (default 1)")
    val.set_defaults(func=_validate)
    exp = csub.add_parser(
        "explain", help="list every key (or the KEYs and sections given) with its value and documentation",
        description="One line per key: value and documentation. Name keys or sections (vlm.pairs fusion.curriculum) "
                    "to see only those. The values are the config's (--config, default the profile train runs, "
                    "and KEY=VALUE overrides), with the built-in default beside each one that differs and where "
                    "each was set: (from PROFILE_OR_FILE), (from override); nothing: the default.")
    exp.add_argument("--config", "-c", default=DEFAULT_PROFILE, metavar="FILE",
                     help=f"a YAML config or a shipped profile's name (cpu-demo, rtx4090, ...): show its values, "
                          f"with the built-in default beside each one that differs; default {DEFAULT_PROFILE}, "
                          f"the profile train runs")
    exp.add_argument("items", nargs="*", metavar="KEY | KEY=VALUE",
                     help="keys or sections to show (all when none); KEY=VALUE items are overrides")
    exp.set_defaults(func=_explain, overrides=[])


def _show(args: argparse.Namespace) -> int:
    from ..config import to_yaml

    print(to_yaml(load_from_args(args)), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from ..recipes import check_configs, recipes_of

    cfg = load_from_args(args)
    recipes = recipes_of(cfg)
    check_configs(cfg, args.world_size, recipes)
    from ..tuning.checks import check_search
    from ..tuning.fit import check_space_fits

    check_search(cfg)  # what Ray would refuse once a search had started (ASHA's grace period, a grid's space)
    check_space_fits(cfg)  # what `tune` refuses before Ray starts: a space key none of whose values builds a model
    print(f"ok: {args.config} (the config, for {' and '.join(recipes)} on {args.world_size} "
          f"process{'es' if args.world_size > 1 else ''}; data, model weights and the machine are checked when a "
          f"command starts)")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from ..config import config_origin, explain, load_config

    items = list(args.items) + list(args.overrides)  # `main` may move KEY=VALUE items to the overrides
    overrides = [i for i in items if "=" in i]
    cfg = load_config(args.config, overrides)  # (first: a bad file or override is refused as a command would)
    print("\n".join(explain(cfg, [i for i in items if "=" not in i], config_origin(args.config, overrides))))
    return 0
