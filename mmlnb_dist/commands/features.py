"""`mmlnb-dist features extract`: image features of a whole shard set, once, for every frozen-encoder run."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Sequence

from . import DEFAULT_PROFILE, add_config_args, load_from_args, positive_int


def _extract(args: argparse.Namespace) -> int:
    from ..core.distributed import DistEnv
    from ..features import extract_features
    from ..models.encoders_base import settings_named

    cfg = load_from_args(args)
    env = DistEnv.from_environment()
    encoder_cfg = cfg.fusion.model.image_encoder
    if args.encoder:
        # the config's weights file is its own encoder's: another one loads it only when the command line gives it
        weights = encoder_cfg.weights_path if args.encoder == encoder_cfg.name or _given(WEIGHTS_KEY, args.overrides) \
            else None
        encoder_cfg = encoder_cfg.model_copy(update={"name": args.encoder, "weights_path": weights,
                                                     "pretrained": _pretrained(args.encoder, args.overrides,
                                                                               encoder_cfg)})
    shards = Path(args.shards or cfg.data.shards)
    out = args.out or default_out(shards, encoder_cfg.name)
    lc = cfg.data.loader
    with settings_named({"model.image_encoder": "fusion.model.image_encoder"}):  # where this command reads them
        result = extract_features(encoder_cfg, shards, out, env=env, dist=cfg.distributed, seed=cfg.run.seed,
                                  batch_size=args.batch_size, image_size=args.image_size,
                                  loader_image_size=lc.image_size, decode_threads=max(1, lc.num_workers),
                                  max_bad_sample_rate=lc.max_bad_sample_rate, max_member_bytes=lc.max_member_bytes)
    if env.is_main:
        print(json.dumps(result, indent=2))
    return 0


def default_out(shards: Path, encoder: str) -> Path:
    """`<shards>-features-<encoder>` beside the shard set, however its folder was spelled (`.`, `x/..`): the
    name of `.` is empty, so its spelling would give a hidden `.-features-<encoder>` inside the shard set."""
    return Path(f"{Path(os.path.abspath(shards))}-features-{encoder}")


PRETRAINED_KEY = "fusion.model.image_encoder.pretrained"
WEIGHTS_KEY = "fusion.model.image_encoder.weights_path"


def _given(key: str, overrides: Sequence[str]) -> bool:
    """Whether the command line's overrides set `key`."""
    return any(o.split("=", 1)[0].strip() == key for o in overrides or ())


def _encoder_name(text: str) -> str:
    """argparse type of --encoder: an empty name (`--encoder "$UNSET"`) read as "not given" and silently
    extracted with the config's encoder instead."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"empty encoder name ({text!r}): give a models registry name, e.g. "
                                         "`--encoder tiny`, or leave the flag out for fusion.model.image_encoder.name")
    return text


def _pretrained(encoder: str, overrides: Sequence[str], configured: Any) -> bool:
    """Whether `--encoder NAME` loads NAME's pretrained weights: yes (what a TRIDENT user expects of a named
    encoder), except for the random-by-design `tiny` / `<name>-tiny` encoders, or when the command line sets
    fusion.model.image_encoder.pretrained itself, or when NAME is the config's own encoder (`configured`, its
    image_encoder section). The profile's value was chosen for the profile's own encoder (cpu-demo: false, for
    `tiny`), so it does not decide for another one; for that one it does, as its weights_path does: a run refused
    on features of other weights is told to extract with `--encoder NAME` and its own settings, which must then
    give the weights that run builds."""
    from ..models.pathology import TINY_SUFFIX

    if _given(PRETRAINED_KEY, overrides):
        return configured.pretrained
    if encoder == "tiny" or encoder.endswith(TINY_SUFFIX):
        return False
    return configured.pretrained if encoder == configured.name else True


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("features", help="extract image features once per shard set and encoder",
                           description="Feature extraction for recipes whose image encoder stays frozen.")
    actions = group.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "extract", help="features of every sample of a shard set (distributed, exactly once, resumable)",
        description="Every rank encodes whole shards (exactly once across ranks), batched, in distributed.precision "
        "(bf16/fp16 cast as training casts the model, or fp32; fp16 needs a GPU, as for training), one "
        "safetensors file per shard written atomically, "
        "with the encoder, weights digest, transform, shard-set digest, precision and package versions in "
        "provenance.json. Run as one process or "
        "under `deepspeed --no_local_rank --module mmlnb_dist.cli features extract ...` / torchrun. A killed "
        "run continues with the same command (finished shards are skipped); different settings are refused. "
        "Train on the result with fusion.image_features=OUT.",
    )
    p.add_argument("--encoder", default=None, type=_encoder_name,
                   help="image encoder name (models registry); default fusion.model.image_encoder.name. A "
                   "named encoder loads its pretrained weights (or fusion.model.image_encoder.weights_path when "
                   "it is the config's own encoder or the command line gives the file); "
                   "random ones only with fusion.model.image_encoder.pretrained=false on the command line or in "
                   "the config naming that same encoder "
                   "(`tiny` and `<name>-tiny` are always random). provenance.json records which")
    p.add_argument("--shards", default=None, type=Path, help="input shard set; default data.shards")
    p.add_argument("--out", default=None, type=Path,
                   help="output folder, outside the shard set (a rebuild of the set replaces its folder); "
                   "default <shards>-features-<encoder>")
    p.add_argument("--batch-size", default=64, type=positive_int, help="images per encoder pass and rank (default 64)")
    p.add_argument("--image-size", default=None, type=positive_int,
                   help="resize side; default the encoder's own input size, else data.loader.image_size")
    add_config_args(p, DEFAULT_PROFILE)
    p.set_defaults(func=_extract)
