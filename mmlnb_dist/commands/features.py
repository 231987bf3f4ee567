"""`mmlnb-dist features extract`: image features of a whole shard set, once, for every frozen-encoder run."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import DEFAULT_PROFILE, add_config_args, load_from_args, positive_int


def _extract(args: argparse.Namespace) -> int:
    from ..core.distributed import DistEnv
    from ..features import extract_features
    from ..models.encoders_base import settings_named

    cfg = load_from_args(args)
    env = DistEnv.from_environment()
    encoder_cfg = cfg.fusion.model.image_encoder.model_copy(update={"name": args.encoder or
                                                                    cfg.fusion.model.image_encoder.name})
    shards = Path(args.shards or cfg.data.shards)
    out = args.out or Path(f"{shards}-features-{encoder_cfg.name}")
    lc = cfg.data.loader
    with settings_named({"model.image_encoder": "fusion.model.image_encoder"}):  # where this command reads them
        result = extract_features(encoder_cfg, shards, out, env=env, dist=cfg.distributed, seed=cfg.run.seed,
                                  batch_size=args.batch_size, image_size=args.image_size,
                                  loader_image_size=lc.image_size, decode_threads=max(1, lc.num_workers),
                                  max_bad_sample_rate=lc.max_bad_sample_rate, max_member_bytes=lc.max_member_bytes)
    if env.is_main:
        print(json.dumps(result, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("features", help="extract image features once per shard set and encoder",
                           description="Feature extraction for recipes whose image encoder stays frozen.")
    actions = group.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "extract", help="features of every sample of a shard set (distributed, exactly once, resumable)",
        description="Every rank encodes whole shards (exactly once across ranks), batched, bf16 autocast on CUDA "
        "and fp32 on the CPU, one safetensors file per shard written atomically, with the encoder, weights "
        "digest, transform, shard-set digest and package versions in provenance.json. Run as one process or "
        "under `deepspeed --no_local_rank --module mmlnb_dist.cli features extract ...` / torchrun. A killed "
        "run continues with the same command (finished shards are skipped); different settings are refused. "
        "Train on the result with fusion.image_features=OUT.",
    )
    p.add_argument("--encoder", default=None,
                   help="image encoder name (models registry); default fusion.model.image_encoder.name. Its "
                   "weights come from fusion.model.image_encoder.pretrained / weights_path")
    p.add_argument("--shards", default=None, type=Path, help="input shard set; default data.shards")
    p.add_argument("--out", default=None, type=Path, help="output folder; default <shards>-features-<encoder>")
    p.add_argument("--batch-size", default=64, type=positive_int, help="images per encoder pass and rank (default 64)")
    p.add_argument("--image-size", default=None, type=positive_int,
                   help="resize side; default the encoder's own input size, else data.loader.image_size")
    add_config_args(p, DEFAULT_PROFILE)
    p.set_defaults(func=_extract)
