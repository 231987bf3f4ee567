"""`mmlnb-dist config show|explain|validate`."""
from __future__ import annotations

import argparse

from . import add_config_args, load_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show, explain or validate a config")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    show = csub.add_parser("show", help="print the resolved config as YAML")
    add_config_args(show)
    show.set_defaults(func=_show)
    val = csub.add_parser("validate", help="load and validate a config; exit 2 with the reason if invalid")
    add_config_args(val)
    val.set_defaults(func=_validate)
    exp = csub.add_parser(
        "explain", help="list every key (or the KEYs and sections given) with its value and documentation",
        description="One line per key: value and documentation. Name keys or sections (vlm.pairs fusion.curriculum) "
                    "to see only those; with --config (and KEY=VALUE overrides), the values are that config's, "
                    "with the default beside each one that differs.")
    exp.add_argument("--config", "-c", metavar="FILE", help="a YAML config or a shipped profile's name (cpu-demo, "
                                                            "rtx4090, ...): show its values (default: the defaults)")
    exp.add_argument("items", nargs="*", metavar="KEY | KEY=VALUE",
                     help="keys or sections to show (all when none); KEY=VALUE items are overrides")
    exp.set_defaults(func=_explain, overrides=[])


def _show(args: argparse.Namespace) -> int:
    from ..config import to_yaml

    print(to_yaml(load_from_args(args)), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    load_from_args(args)
    print(f"ok: {args.config or 'defaults'}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from ..config import explain, load_config

    items = list(args.items) + list(args.overrides)  # `main` may move KEY=VALUE items to the overrides
    overrides = [i for i in items if "=" in i]
    cfg = load_config(args.config, overrides) if args.config or overrides else None
    print("\n".join(explain(cfg, [i for i in items if "=" not in i])))
    return 0
