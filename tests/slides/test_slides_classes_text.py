"""`slides tile --classes` takes comma-separated class names as text, as `shards build --classes` does: slides
labelled `1` and `2` (tumour grades) were refused ("data.classes.0: Input should be a valid string"), because the
flag was passed on as the YAML list `[1,2]`, whose items YAML reads as numbers."""
from __future__ import annotations

import json

from support.slides import tile, two_slides


def test_class_names_that_yaml_would_read_as_numbers_stay_text(tmp_path):
    slides = two_slides(tmp_path / "slides")
    (slides / "labels.csv").write_text("slide_id,label\nUD-0,1\nPD-0,2\n")
    out = tmp_path / "out"
    assert tile(slides, out, "--classes", "1, 2") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == ["1", "2"]
    assert manifest["splits"]["train"]["class_counts"] == {"1": 2, "2": 2}  # each slide's tiles under its label
