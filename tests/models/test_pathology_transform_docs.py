"""docs/encoders.md says which transform each pathology model gets, and says only what the code does: every path
(training, `features extract`, predict) uses `data.images.ImageTransform`, which resizes the shorter side straight
to the image size and centre-crops the square; no model has a resize-then-crop of its own. A model card's other
transform (Prov-GigaPath: resize 256, centre crop 224) may be named, but as not applied."""
from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "encoders.md"


def pathology_rows():
    """name -> the `input` cell of the pathology table."""
    lines = DOC.read_text().split("## Pathology foundation models", 1)[1].splitlines()
    header = next(line for line in lines if line.startswith("| name"))
    column = [c.strip() for c in header.strip("|").split("|")].index("input")
    rows = {}
    for line in lines[lines.index(header) + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[column]
    return rows


def test_the_input_column_names_the_size_the_code_resizes_to_and_no_crop_it_does_not_apply():
    from mmlnb_dist.models.pathology import PATHOLOGY_MODELS

    rows = pathology_rows()
    assert set(rows) == set(PATHOLOGY_MODELS)
    for name, cell in rows.items():
        assert cell.split()[0] == str(PATHOLOGY_MODELS[name].input_size), name
        if "crop" in cell:  # a card's own resize-then-crop: the code has none, so the docs must say so
            assert "not applied" in cell, f"{name}: {cell!r} reads as if the crop were applied"


def test_the_registry_notes_do_not_describe_a_transform_as_if_applied():
    from mmlnb_dist.models.pathology import PATHOLOGY_MODELS

    for name, entry in PATHOLOGY_MODELS.items():
        if "crop" in entry.notes:
            assert "not applied" in entry.notes, name
