"""`shards verify` on a multi-label set prints a per-label table whose columns line up, also when every label name
is shorter than the header word `label` (the rows were shifted left of the header)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mmlnb_dist.data.build import SampleSpec, build_shards
from mmlnb_dist.data.config import BuildConfig

from support.cli import run_cli

VOCAB = ["fat", "mit", "nec"]


def _short_label_shards(root):
    rng = np.random.default_rng(0)
    specs = []
    for i in range(12):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
        labels = [VOCAB[i % 3]] + ([VOCAB[(i + 1) % 3]] if i % 2 else [])
        specs.append(SampleSpec(f"s{i:02d}", labels[0], buf.getvalue(), description="a patch",
                                meta={"labels": labels}))
    build = BuildConfig(max_samples_per_shard=8, val_fraction=0.25, image_format="png", image_size=16, seed=0)
    build_shards(specs, root / "shards", build, VOCAB, progress=False)
    return root / "shards"


def test_the_label_table_lines_up_with_short_label_names(tmp_path):
    code, out, _ = run_cli(["shards", "verify", str(_short_label_shards(tmp_path))])
    assert code == 0
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("label counts"))
    header, rows = lines[start + 1], lines[start + 2:start + 2 + len(VOCAB)]
    assert header.split()[0] == "label" and [r.split()[0] for r in rows] == VOCAB
    # every count ends where its split's name ends in the header (right-aligned columns)
    ends = [header.index(name) + len(name) for name in header.split()[1:]]
    for row in rows:
        at, got = len(row.split()[0]), []
        for cell in row.split()[1:]:
            at = row.index(cell, at) + len(cell)
            got.append(at)
        assert got == ends, (header, row)
