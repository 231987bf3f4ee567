"""`pipeline --patches`: what the shards stage reads decides whether it is up to date, and what it leaves out is
said, in the console and in the report."""
from __future__ import annotations

import json
import logging

import numpy as np
from PIL import Image

from mmlnb_dist.cli import main
from support.report import stage_statuses
from support.shards import write_described_patches


def _labelled(root):
    """A described patch folder with a labels.csv beside the images (path, label, slide_id)."""
    write_described_patches(root)
    rows = [f"{p.relative_to(root).as_posix()},{p.parent.name},{p.parent.name}-{i % 2}"
            for i, p in enumerate(sorted(root.rglob("*.png")))]
    (root / "labels.csv").write_text("path,label,slide_id\n" + "\n".join(rows) + "\n")
    return root / "labels.csv"


def _until_shards(tmp_path, given, capsys, *extra):
    code = main(["pipeline", "--patches", str(given), "--config", "cpu-demo", "--until", "shards",
                 f"run.output_dir={tmp_path / 'runs'}", f"data.shards={tmp_path / 'shards'}",
                 "data.build.group_by_slide=false", *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    return stage_statuses(out)["shards"], out


def test_a_changed_image_or_descriptions_file_beside_a_patches_csv_rebuilds_the_shards(tmp_path, capsys):
    """Found by the auditor: with the patches given as a CSV, only the CSV file was fingerprinted, so an image it
    lists overwritten, or the descriptions.jsonl beside it edited, left stale shards reported "up to date"."""
    given = _labelled(tmp_path / "p1")
    assert _until_shards(tmp_path, given, capsys)[0] == "ran"
    assert _until_shards(tmp_path, given, capsys)[0] == "skipped (up to date)"

    Image.fromarray(np.zeros((30, 30, 3), dtype=np.uint8)).save(tmp_path / "p1" / "UD" / "UD_000.png")
    assert _until_shards(tmp_path, given, capsys)[0] == "ran"

    descriptions = tmp_path / "p1" / "descriptions.jsonl"
    rows = [json.loads(line) for line in descriptions.read_text().splitlines()]
    rows[0]["description"] = "an edited description"
    descriptions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _until_shards(tmp_path, given, capsys)[0] == "ran"
    assert _until_shards(tmp_path, given, capsys)[0] == "skipped (up to date)"
