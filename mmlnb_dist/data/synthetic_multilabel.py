"""The synthetic multi-label set: H&E-like patches showing 1-3 co-occurring findings, with noisy captions.

Each of the 12 findings is drawn so an image model can see it (its own colour and shape): fibrillary pink
neuropil, sheets of small round blue nuclei, large ganglion-like cells with a vesicular nucleus and a nucleolus,
clusters of red blood cells (haemorrhage), laminated blue calcified masses, pale smudged necrosis with nuclear
dust, near-black mitotic figures, wavy deep-pink fibrovascular bands, empty white fat vacuoles, golden-brown
haemosiderin granules, pale blue myxoid matrix and wavy Schwannian spindle nuclei. Captions name a noisy subset:
each true finding is left out with probability `omit_rate`, and with probability `wrong_rate` a finding the
patch does not show is named too; with probability `faint_rate` a finding is drawn faint (present, harder to
see). Each slide has its own tint and a favoured finding, so a grouped split matters.

Written as the CSV that `shards build --task multilabel` reads: `pairs.csv` (image, text, labels joined by "|",
slide_id, and `faint`: the findings drawn faint, for analysis) and `images/pNNNNN.png`. Everything derives from
`np.random.default_rng([seed, ...])`: one seed, one set of bytes.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..core.progress import progress_bar
from .generated import generator_output, remove_stale_files

FINDINGS: Tuple[str, ...] = (
    "calcification", "dense small nuclei", "fat", "fibrovascular stroma", "ganglion-like cells", "haemorrhage",
    "haemosiderin", "mitoses", "myxoid matrix", "necrosis", "neuropil", "schwannian spindle cells",
)
"""The vocabulary, sorted (as `shards build` sorts a vocabulary it infers)."""

FINDING_PHRASES: Dict[str, Tuple[str, ...]] = {
    "calcification": ("calcification", "calcified deposits"),
    "dense small nuclei": ("sheets of small round blue cells", "densely packed small nuclei"),
    "fat": ("adipose tissue", "fat vacuoles"),
    "fibrovascular stroma": ("fibrovascular septa", "collagenous stroma"),
    "ganglion-like cells": ("ganglion-like cells", "large cells with abundant cytoplasm"),
    "haemorrhage": ("haemorrhage", "extravasated red cells"),
    "haemosiderin": ("haemosiderin", "brown pigment"),
    "mitoses": ("mitotic figures", "mitoses"),
    "myxoid matrix": ("myxoid matrix", "pale bluish myxoid change"),
    "necrosis": ("necrosis", "necrotic debris"),
    "neuropil": ("neuropil", "fibrillary pink background"),
    "schwannian spindle cells": ("schwannian spindle cells", "wavy spindle nuclei"),
}
"""How captions name each finding (lower case; no phrase contains another finding's phrase)."""

_GENERIC = ("Tissue fragment stained with H&E.", "Section of a small round cell tumour; see the report.",
            "Representative field at medium power.")
_OPENERS = ("H&E section showing ", "This field shows ", "Microscopy: ", "There is ")

_BACKGROUND = (226.0, 174.0, 206.0)  # eosin-tinted stroma-poor background (darker than empty fat vacuoles)
_COLOURS: Dict[str, Tuple[float, float, float]] = {
    "neuropil": (208, 126, 170), "dense small nuclei": (62, 40, 132), "ganglion-like cells": (205, 105, 175),
    "ganglion nucleus": (112, 82, 168), "nucleolus": (150, 20, 60), "haemorrhage": (200, 30, 45),
    "calcification": (40, 72, 158), "calcification ring": (95, 125, 200), "necrosis": (178, 162, 184),
    "nuclear dust": (92, 60, 110), "mitoses": (20, 10, 35), "fibrovascular stroma": (226, 95, 120),
    "fat": (252, 250, 250), "fat rim": (220, 150, 190), "haemosiderin": (150, 95, 30),
    "myxoid matrix": (172, 194, 226), "schwannian spindle cells": (118, 76, 124),
}


def _smooth(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field in [0, 1]: a coarse grid of uniforms, bilinearly upsampled to `size`."""
    grid = rng.random((cells + 1, cells + 1))
    t = np.linspace(0, cells, size)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _ellipse(img: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float,
             colour: Tuple[float, float, float], alpha: float = 1.0) -> None:
    """Paint a filled ellipse (in place), computed only inside its bounding box."""
    size = img.shape[0]
    r = max(ry, rx) + 1
    y0, y1, x0, x1 = (max(0, int(cy - r)), min(size, int(cy + r) + 1), max(0, int(cx - r)), min(size, int(cx + r) + 1))
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    inside = ((dy * c - dx * s) / max(ry, 0.5)) ** 2 + ((dy * s + dx * c) / max(rx, 0.5)) ** 2 <= 1.0
    patch = img[y0:y1, x0:x1]
    patch[inside] = (1 - alpha) * patch[inside] + alpha * np.asarray(colour)


def _wash(img: np.ndarray, mask: np.ndarray, colour: Tuple[float, float, float], alpha: float) -> None:
    img[mask] = (1 - alpha) * img[mask] + alpha * np.asarray(colour)


def _fade(img: np.ndarray, before: np.ndarray, strength: float) -> None:
    """Blend the layer just drawn (img - before) back to `strength` of its contrast: a faint finding."""
    if strength < 1.0:
        img[:] = before + strength * (img - before)


def render_findings(findings: Sequence[str], size: int, rng: np.random.Generator,
                    fade: Optional[Mapping[str, float]] = None) -> np.ndarray:
    """Paint one patch showing exactly `findings` (names of FINDINGS); uint8 `[size, size, 3]`. `fade` maps a
    finding to the contrast it is drawn with (1: full; a faint finding is harder to see, not absent)."""
    fade = dict(fade or {})
    unknown = [f for f in findings if f not in FINDINGS]
    if unknown:
        raise ValueError(f"unknown findings {unknown} (known: {', '.join(FINDINGS)})")
    on, k = set(findings), size / 128.0  # lengths below are for a 128-pixel patch
    img = np.empty((size, size, 3), np.float64)
    img[:] = _BACKGROUND
    img *= (0.96 + 0.06 * _smooth(rng, size, 4))[..., None]
    col = _COLOURS
    # Background textures first, then structures, small dark objects last (on top).
    if "necrosis" in on:
        before = img.copy()
        region = _smooth(rng, size, 3) > 0.45
        _wash(img, region, col["necrosis"], 0.9)
        for _ in range(int(25 * k * k) + 3):
            cy, cx = rng.uniform(0, size, 2)
            if region[min(int(cy), size - 1), min(int(cx), size - 1)]:
                _ellipse(img, cy, cx, 1.2 * k + 0.5, 1.2 * k + 0.5, 0.0, col["nuclear dust"])
        _fade(img, before, fade.get("necrosis", 1.0))
    if "myxoid matrix" in on:
        before = img.copy()
        _wash(img, _smooth(rng, size, 3) > 0.5, col["myxoid matrix"], 0.8)
        _fade(img, before, fade.get("myxoid matrix", 1.0))
    if "neuropil" in on:
        before = img.copy()
        yy, xx = np.mgrid[0:size, 0:size] / max(k, 0.25)
        theta = 3.0 * _smooth(rng, size, 3)
        waves = np.sin(0.9 * (yy * np.cos(theta) + xx * np.sin(theta)) + 6 * _smooth(rng, size, 6))
        _wash(img, waves > 0.4, col["neuropil"], 0.85)
        _fade(img, before, fade.get("neuropil", 1.0))
    if "fibrovascular stroma" in on:
        before = img.copy()
        for _ in range(int(rng.integers(1, 3))):
            x = np.arange(size)
            centre = rng.uniform(0.2, 0.8) * size + 8 * k * np.sin(x / (10 * k) + rng.uniform(0, 6))
            band = np.abs(np.arange(size)[:, None] - centre[None, :]) < 5 * k
            _wash(img, band if rng.random() < 0.5 else band.T, col["fibrovascular stroma"], 0.95)
        _fade(img, before, fade.get("fibrovascular stroma", 1.0))
    if "fat" in on:
        before = img.copy()
        for _ in range(int(rng.integers(2, 4))):
            cy, cx, r = *rng.uniform(0, size, 2), rng.uniform(11, 16) * k
            _ellipse(img, cy, cx, r + 1.5 * k, r + 1.5 * k, 0.0, col["fat rim"])
            _ellipse(img, cy, cx, r, r, 0.0, col["fat"])
        _fade(img, before, fade.get("fat", 1.0))
    if "haemorrhage" in on:
        before = img.copy()
        cy, cx = rng.uniform(0.25, 0.75, 2) * size
        for _ in range(int(45 * k * k) + 6):
            dy, dx = rng.normal(0, 14 * k, 2)
            _ellipse(img, cy + dy, cx + dx, 2.6 * k + 0.4, 2.6 * k + 0.4, 0.0, col["haemorrhage"])
        _fade(img, before, fade.get("haemorrhage", 1.0))
    if "haemosiderin" in on:
        before = img.copy()
        for _ in range(int(rng.integers(6, 10))):
            cy, cx = rng.uniform(0, size, 2)
            for _ in range(6):
                dy, dx = rng.normal(0, 3 * k, 2)
                _ellipse(img, cy + dy, cx + dx, 1.6 * k + 0.4, 1.6 * k + 0.4, 0.0, col["haemosiderin"])
        _fade(img, before, fade.get("haemosiderin", 1.0))
    if "calcification" in on:
        before = img.copy()
        for _ in range(int(rng.integers(1, 3))):
            cy, cx, r = *rng.uniform(0.2, 0.8, 2) * size, rng.uniform(9, 13) * k
            for _ in range(3):  # an irregular mass: overlapping lobes
                dy, dx = rng.normal(0, 3 * k, 2)
                _ellipse(img, cy + dy, cx + dx, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi),
                         col["calcification"])
            _ellipse(img, cy, cx, r * 0.55, r * 0.55, 0.0, col["calcification ring"], 0.6)  # lamination
            _ellipse(img, cy, cx, r * 0.35, r * 0.35, 0.0, col["calcification"])
        _fade(img, before, fade.get("calcification", 1.0))
    if "ganglion-like cells" in on:
        before = img.copy()
        for _ in range(int(rng.integers(2, 4))):
            cy, cx, r = *rng.uniform(0.15, 0.85, 2) * size, rng.uniform(11, 14) * k
            _ellipse(img, cy, cx, r, r * 0.85, rng.uniform(0, np.pi), col["ganglion-like cells"])
            ny, nx = cy + rng.uniform(-3, 3) * k, cx + rng.uniform(-3, 3) * k  # eccentric vesicular nucleus
            _ellipse(img, ny, nx, 4.5 * k, 4.5 * k, 0.0, col["ganglion nucleus"])
            _ellipse(img, ny, nx, 1.5 * k + 0.4, 1.5 * k + 0.4, 0.0, col["nucleolus"])
        _fade(img, before, fade.get("ganglion-like cells", 1.0))
    if "schwannian spindle cells" in on:
        before = img.copy()
        for _ in range(int(22 * k * k) + 4):
            cy, cx = rng.uniform(0, size, 2)
            _ellipse(img, cy, cx, 1.4 * k + 0.4, 6.5 * k, rng.normal(0.4, 0.3), col["schwannian spindle cells"])
        _fade(img, before, fade.get("schwannian spindle cells", 1.0))
    if "dense small nuclei" in on:
        before = img.copy()
        for _ in range(int(90 * k * k) + 10):
            cy, cx = rng.uniform(0, size, 2)
            _ellipse(img, cy, cx, 2.4 * k + 0.4, 2.4 * k + 0.4, 0.0, col["dense small nuclei"], 0.9)
        _fade(img, before, fade.get("dense small nuclei", 1.0))
    if "mitoses" in on:
        before = img.copy()
        for _ in range(int(rng.integers(4, 7))):
            cy, cx = rng.uniform(0.1, 0.9, 2) * size
            for _ in range(3):  # a clumped, irregular figure of dark bars
                _ellipse(img, cy + rng.normal(0, 1.5 * k), cx + rng.normal(0, 1.5 * k), 1.2 * k + 0.5, 4 * k,
                         rng.uniform(0, np.pi), col["mitoses"])
        _fade(img, before, fade.get("mitoses", 1.0))
    img += rng.normal(0, 4.0, img.shape)  # sensor and section noise
    return np.clip(img, 0, 255).astype(np.uint8)


def caption_for(truth: Sequence[str], rng: np.random.Generator, omit_rate: float,
                wrong_rate: float) -> Tuple[str, int, int]:
    """A caption naming a noisy subset of `truth`; returns (caption, true findings omitted, wrong ones named)."""
    said = [f for f in truth if rng.random() >= omit_rate]
    omitted = len(truth) - len(said)
    wrong = 0
    if rng.random() < wrong_rate:
        said.append(str(rng.choice([f for f in FINDINGS if f not in truth])))
        wrong = 1
    if not said:
        return str(rng.choice(_GENERIC)), omitted, wrong
    phrases = [str(rng.choice(FINDING_PHRASES[f])) for f in rng.permutation(said)]
    body = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return str(rng.choice(_OPENERS)) + body + ".", omitted, wrong


def _png_bytes(arr: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def make_multilabel_dataset(out_dir: Union[str, Path], n: int = 600, size: int = 128, n_slides: int = 30,
                            omit_rate: float = 0.25, wrong_rate: float = 0.15, faint_rate: float = 0.3,
                            seed: int = 0, progress: bool = False) -> Dict[str, object]:
    """Write `n` patches to `out_dir/images/pNNNNN.png` and `out_dir/pairs.csv` (image, text, labels, slide_id,
    faint);
    return a summary (label counts, omitted and wrong caption mentions).

    Each patch shows 1-3 findings: the slide's favoured finding with probability 0.5, the rest drawn at random;
    patch `i < len(FINDINGS)` always shows finding `i`, so every label appears once `n >= len(FINDINGS)`.
    Each finding of a patch is drawn faint (at 35% of its contrast) with probability `faint_rate`: still in the
    image, but hard enough to see that the caption helps (what a fused image + text model can exploit).
    """
    if n < 1 or size < 16 or n_slides < 1:
        raise ValueError(f"need n >= 1, size >= 16 and n_slides >= 1 (got n={n}, size={size}, n_slides={n_slides})")
    for name, rate in (("omit_rate", omit_rate), ("wrong_rate", wrong_rate), ("faint_rate", faint_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {rate}")
    out_dir = Path(out_dir)
    own = re.compile(r"pairs\.csv|images/p\d{5,}\.png")  # p100000.png on: a set of more than 99999 patches
    with generator_output(out_dir, own, "data synth --task multilabel", "pairs.csv and images/pNNNNN.png"):
        # an earlier run's extra patches: the folder holds this run's set alone (`predict images/` reads them all)
        remove_stale_files(out_dir, own, ["pairs.csv", *(f"images/p{i:05d}.png" for i in range(n))])
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        slide_rng = np.random.default_rng([seed, 1])
        favoured = slide_rng.integers(0, len(FINDINGS), n_slides)
        tint = slide_rng.uniform(0.94, 1.04, (n_slides, 3))
        rows: List[Tuple[str, str, str, str, str]] = []
        counts = {f: 0 for f in FINDINGS}
        omitted_total = wrong_total = faint_total = 0
        for i in progress_bar(range(n), desc="synthetic multi-label patches", enabled=progress):
            rng = np.random.default_rng([seed, 2, i])  # per patch: independent of the order patches are drawn in
            slide = i % n_slides
            k = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
            chosen = [i] if i < len(FINDINGS) else []
            if rng.random() < 0.5 and int(favoured[slide]) not in chosen:
                chosen.append(int(favoured[slide]))
            rest = [j for j in rng.permutation(len(FINDINGS)) if j not in chosen]
            chosen += [int(j) for j in rest[: max(0, k - len(chosen))]]
            truth = sorted(FINDINGS[j] for j in chosen)
            fade = {f: 0.35 for f in truth if rng.random() < faint_rate}
            faint_total += len(fade)
            img = render_findings(truth, size, rng, fade).astype(np.float64) * tint[slide]
            rel = f"images/p{i:05d}.png"
            (out_dir / rel).write_bytes(_png_bytes(np.clip(img, 0, 255).astype(np.uint8)))
            text, omitted, wrong = caption_for(truth, rng, omit_rate, wrong_rate)
            omitted_total, wrong_total = omitted_total + omitted, wrong_total + wrong
            for f in truth:
                counts[f] += 1
            rows.append((rel, text, "|".join(truth), f"slide-{slide:03d}", "|".join(sorted(fade))))
        with open(out_dir / "pairs.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["image", "text", "labels", "slide_id", "faint"])
            writer.writerows(rows)
        return {"out_dir": str(out_dir), "num_samples": n, "label_counts": counts,
                "n_slides": min(n, n_slides),  # the slides holding patches (patch i is on slide i % n_slides)
                "omitted_mentions": omitted_total, "wrong_mentions": wrong_total, "faint_findings": faint_total,
                "size": size, "seed": seed,
                "findings": list(FINDINGS)}
