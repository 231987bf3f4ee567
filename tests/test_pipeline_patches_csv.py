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


def test_unreadable_patches_the_shards_stage_leaves_out_are_counted_in_the_console_and_the_report(tmp_path, capsys,
                                                                                                   caplog):
    """`mmlnb-dist shards build` says "skipped N unreadable images"; the pipeline's shards stage left them out
    without a word. It now warns with the count and the first paths, and the report says so, on a rerun too."""
    given = _labelled(tmp_path / "p1")
    (tmp_path / "p1" / "PD" / "PD_001.png").write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING):
        status, out = _until_shards(tmp_path, given, capsys, "data.build.max_skipped_rate=0.2")
    assert status == "ran"
    warned = [r.getMessage() for r in caplog.records if "unreadable images" in r.getMessage()]  # (not the path)
    assert len(warned) == 1 and "skipped 1 unreadable images" in warned[0] and "PD_001.png" in warned[0], warned
    assert "- shards: skipped 1 unreadable images (listed in manifest.json 'skipped'): " in out, out
    assert "PD_001.png" in out.split("- shards: skipped", 1)[1].splitlines()[0]
    status, again = _until_shards(tmp_path, given, capsys, "data.build.max_skipped_rate=0.2")
    assert status == "skipped (up to date)" and "- shards: skipped 1 unreadable images" in again
