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
    exp = csub.add_parser("explain", help="list every key with its default and documentation")
    exp.set_defaults(func=_explain)


def _show(args: argparse.Namespace) -> int:
    from ..config import to_yaml

    print(to_yaml(load_from_args(args)), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    load_from_args(args)
    print(f"ok: {args.config or 'defaults'}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from ..config import explain

    print("\n".join(explain()))
    return 0
