"""`slides tile --track` opened its tracking run in `<out>.work/` (config.yaml, metrics.jsonl, tracking/) before
the inputs were read, so a usage error (a missing label file, an --out that is a file, no slide) left that folder
behind. The inputs are checked first: a usage error exits 2 and writes nothing."""
from __future__ import annotations

import pytest

from support.cli import run_cli


@pytest.mark.parametrize("case", ["missing-labels", "out-is-a-file", "no-slides"])
def test_a_usage_error_with_track_leaves_no_work_folder(tmp_path, case):
    wsi = tmp_path / "wsi"
    wsi.mkdir()
    if case != "no-slides":
        (wsi / "S1.svs").write_bytes(b"not read")
    labels = tmp_path / "labels.csv"
    if case != "missing-labels":
        labels.write_text("slide_id,label\nS1,UD\n")
    out = tmp_path / "out"
    if case == "out-is-a-file":
        out.write_text("notes")
    code, _, err = run_cli(["slides", "tile", "--slides", str(wsi), "--labels", str(labels), "--out", str(out),
                            "--quiet", "--track", "tracking.backends=[stdout]"])
    assert code == 2, err
    assert not (tmp_path / "out.work").exists()
