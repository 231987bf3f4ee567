"""What a tiling run shows the user: a QC picture per slide and one summary table."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

from .qc import REASONS
from .tissue import TissueMask

KEPT_RGB = (0, 90, 255)       # blue: kept tiles
REJECTED_RGB = (230, 20, 20)  # red: tiles rejected by QC
OUTLINE_RGB = (0, 170, 0)     # green: tissue outline (holes too)


def qc_picture(thumb: np.ndarray, mask: TissueMask, boxes: Sequence[tuple], size0: int, path: Path,
               min_side: int = 768) -> Path:
    """Thumbnail with the tissue outline (green), kept tiles (blue) and rejected tiles (red) as PNG.

    Small thumbnails are enlarged (integer factor) so one-pixel outlines and tile boxes stay legible.
    """
    import cv2

    zoom = max(1, int(np.ceil(min_side / max(thumb.shape[:2]))))
    img = cv2.resize(thumb, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) if zoom > 1 else thumb.copy()
    scale = mask.scale / zoom  # level-0 pixels per picture pixel
    for poly in mask.polygons:
        for ring in [poly.outer, *poly.holes]:
            pts = np.round(ring / scale - 0.5).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(img, [pts], True, OUTLINE_RGB, 2)
    side = max(1, int(round(size0 / scale)))
    for x, y, reason in boxes:
        x1, y1 = int(x / scale), int(y / scale)
        color = KEPT_RGB if reason is None else REJECTED_RGB
        cv2.rectangle(img, (x1, y1), (x1 + side - 1, y1 + side - 1), color, 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


# `resumed`: "yes" for a slide reused from the staging of an earlier run (its `seconds` are that run's, not this one's)
SUMMARY_COLUMNS = ["slide_id", "label", "status", "candidates", "kept", *[f"rejected_{r}" for r in REASONS],
                   "seconds", "resumed", "error"]


def summary_rows(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    rows = []
    for r in results:
        row = {c: r.get(c, "") for c in ("slide_id", "label", "status", "candidates", "kept")}
        for reason in REASONS:
            row[f"rejected_{reason}"] = (r.get("rejected") or {}).get(reason, 0)
        row["seconds"] = f"{float(r.get('seconds') or 0.0):.2f}"
        row["resumed"] = "yes" if r.get("resumed") else ""
        row["error"] = r.get("error") or ""
        rows.append(row)
    return rows


def write_summary_csv(rows: List[Dict[str, Any]], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def format_table(rows: List[Dict[str, Any]]) -> str:
    """A plain fixed-width table (the error column last, untruncated)."""
    cols = [c for c in SUMMARY_COLUMNS if c != "error"]
    heads = [c.replace("rejected_", "rej_") for c in cols]
    widths = [max(len(h), *(len(str(r[c])) for r in rows)) if rows else len(h) for h, c in zip(heads, cols)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)) + "  error"]
    for r in rows:
        lines.append("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)) + "  " + str(r["error"]))
    return "\n".join(lines)
