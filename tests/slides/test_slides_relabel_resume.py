"""A corrected label on a rerun relabels the slide's staged tiles; it does not tile the slide again.

The label was in each slide's resume fingerprint, though no tile depends on it (unless `balance_classes` gives
classes their own quotas, which the fingerprint holds): fixing one row of a cohort's label file re-tiled that
slide from its scan. The shards carry the new label either way.
"""
from __future__ import annotations

import json

from support.slides import tile, two_slides


def test_a_relabelled_slide_is_reused_under_its_new_label(tmp_path, capsys):
    wsi = two_slides(tmp_path / "wsi")
    out = tmp_path / "shards"
    assert tile(wsi, out, "--classes", "UD,PD,D") == 0
    (wsi / "labels.csv").write_text("slide_id,label\nUD-0,UD\nPD-0,D\n")  # PD-0 was mislabelled
    capsys.readouterr()
    assert tile(wsi, out, "--classes", "UD,PD,D") == 0
    printed = capsys.readouterr().out
    assert "resumed: 2 slide(s)" in printed
    row = next(line for line in printed.splitlines() if line.startswith("PD-0"))
    assert row.split()[1] == "D"
    labels = {}
    import tarfile

    for shard in out.glob("*.tar"):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())
                    labels.setdefault(meta.get("slide_id"), set()).add(meta.get("label", meta.get("class")))
    assert labels.get("PD-0") == {"D"}, labels
