"""`shards verify` on a multi-label set prints a per-label table whose columns line up, also when every label name
is shorter than the header word `label` (the rows were shifted left of the header)."""
from __future__ import annotations

from support.cli import run_cli
from support.clip import VOCAB, caption_shards


def test_the_label_table_lines_up_with_short_label_names(tmp_path):
    shards = caption_shards(tmp_path, n=24, size=16)
    code, out, _ = run_cli(["shards", "verify", str(shards)])
    assert code == 0
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("label counts"))
    header, rows = lines[start + 1], lines[start + 2:start + 2 + len(VOCAB)]
    assert header.split()[0] == "label" and [r.split()[0] for r in rows] == VOCAB
    # every count ends under the end of its split's name in the header
    ends = [header.index(name) + len(name) for name in header.split()[1:]]
    for row in rows:
        cells, at = row.split()[1:], 0
        got = []
        for cell in cells:
            at = row.index(cell, at if at else len(row.split()[0])) + len(cell)
            got.append(at)
        assert got == ends, (header, row)
