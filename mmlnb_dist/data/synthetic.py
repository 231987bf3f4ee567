"""The embedded synthetic data set: H&E-like neuroblastoma patches, slides, and pathology-style descriptions.

Patches are painted in optical-density space, the way stains absorb light: a hematoxylin map (nuclei, purple)
and an eosin map (neuropil and cytoplasm, pink) are mixed with per-slide stain vectors and converted to RGB
by Beer-Lambert (`rgb = 255 * exp(-OD)`). Morphology depends on the class:

- UD (undifferentiated): sheets of small round nuclei, scant cytoplasm, little neuropil.
- PD (poorly differentiated): scattered small nuclei in a fibrillary pink neuropil background.
- D (differentiated): fewer, large ganglion-like cells with abundant cytoplasm, vesicular nuclei and
  prominent nucleoli, in abundant neuropil.

Each slide has one class and its own stain (hue and intensity), so colour alone is a weak cue and a grouped
split is meaningful. Everything derives from `np.random.default_rng([seed, ...])`: a seed gives the same bytes.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..core.progress import progress_bar
from .generated import generator_output, remove_stale_files
from .process_map import ordered_process_map

log = logging.getLogger(__name__)

CLASSES: Tuple[str, ...] = ("UD", "PD", "D")


# --------------------------------------------------------------------------------------------------------------
# Stains
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stain:
    """Optical-density vectors of hematoxylin and eosin and their intensity on one slide."""

    hematoxylin: Tuple[float, float, float] = (0.65, 0.70, 0.29)
    eosin: Tuple[float, float, float] = (0.07, 0.99, 0.11)
    h_scale: float = 1.0
    e_scale: float = 1.0
    background: float = 0.04
    """Optical density of the glass and mounting medium (slightly off-white)."""


def random_stain(rng: np.random.Generator) -> Stain:
    """A slide's stain: reference H&E vectors perturbed in hue and intensity (lab-to-lab variation)."""
    def jitter(v: Tuple[float, float, float], amount: float) -> Tuple[float, float, float]:
        w = np.clip(np.asarray(v) + rng.uniform(-amount, amount, 3), 0.02, None)
        w = w / np.linalg.norm(w)
        return tuple(float(x) for x in w)  # type: ignore[return-value]

    return Stain(jitter(Stain.hematoxylin, 0.12), jitter(Stain.eosin, 0.12),
                 float(rng.uniform(0.7, 1.3)), float(rng.uniform(0.6, 1.4)), float(rng.uniform(0.02, 0.10)))


# --------------------------------------------------------------------------------------------------------------
# Drawing primitives (numpy only)
# --------------------------------------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field in [0, 1]: a `cells x cells` grid of uniforms, bilinearly upsampled."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, size, dtype=np.float32)
    i = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _fibres(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Fibrillary texture in [0, 1]: two crossing sets of fine wavy streaks (neuropil)."""
    yy, xx = np.arange(size, dtype=np.float32)[:, None], np.arange(size, dtype=np.float32)[None, :]
    out = np.zeros((size, size), np.float32)
    for weight in (0.65, 0.35):
        theta = rng.uniform(0, np.pi)
        warp = _smooth_noise(rng, size, 5) * 14.0  # slow bending of the fibres
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) * (rng.uniform(0.5, 0.8) / scale) + warp
        out += weight * (0.5 + 0.5 * np.sin(phase)) ** 4
    return out


def _stamp(canvas: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float, value: float,
           soft: float = 1.0, texture: Optional[np.ndarray] = None) -> None:
    """Add a soft-edged filled ellipse of `value` to `canvas` (max-blend, so overlaps stay plausible)."""
    size = canvas.shape[0]
    r = max(ry, rx) + 2 * soft
    y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 1)
    x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    # Open grids broadcast to the box: far cheaper than dense index arrays for thousands of small stamps.
    yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = xx * c + yy * s, yy * c - xx * s
    d = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)  # 1 on the boundary
    alpha = np.clip((1.0 - d) * min(rx, ry) / soft + 0.5, 0.0, 1.0)
    stamp = alpha * value
    if texture is not None:
        stamp = stamp * texture[y0:y1, x0:x1]
    np.maximum(canvas[y0:y1, x0:x1], stamp, out=canvas[y0:y1, x0:x1])


def _scatter(rng: np.random.Generator, n: int, size: int, min_dist: float) -> np.ndarray:
    """`n` points in the patch, rejecting ones closer than `min_dist` to an earlier point (few tries each)."""
    pts: List[Tuple[float, float]] = []
    for _ in range(n * 6):
        if len(pts) == n:
            break
        p = rng.uniform(-4, size + 4, 2)
        if not pts or np.min(np.hypot(*(np.asarray(pts) - p).T)) >= min_dist:
            pts.append((float(p[0]), float(p[1])))
    return np.asarray(pts, dtype=np.float32).reshape(-1, 2)


# --------------------------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------------------------
def render_patch(label: str, size: int, rng: np.random.Generator, stain: Optional[Stain] = None) -> np.ndarray:
    """Paint one H&E-like patch of class `label` ("UD", "PD" or "D"); returns uint8 `[size, size, 3]`.

    Deterministic for the generator's state. Reused by the slides part to paint synthetic whole slides."""
    if label not in CLASSES:
        raise ValueError(f"unknown label {label!r} (synthetic classes: {', '.join(CLASSES)})")
    stain = stain or Stain()
    k = size / 256.0  # all lengths below are for a 256-pixel patch at about 20x
    area = (size / 256.0) ** 2
    hema, eos = np.zeros((size, size), np.float32), np.zeros((size, size), np.float32)
    chromatin = 0.75 + 0.5 * _smooth_noise(rng, size, max(4, size // 6))  # granular nuclear texture

    if label == "UD":
        # Little neuropil: faint pale background, crowded small round blue cells with scant cytoplasm.
        eos += 0.18 + 0.10 * _smooth_noise(rng, size, 4)
        eos += 0.08 * _fibres(rng, size, k)
        for cy, cx in _scatter(rng, int(rng.integers(190, 240) * area), size, 8.0 * k):
            r = rng.uniform(4.2, 6.2) * k
            _stamp(hema, cy, cx, r, r * rng.uniform(0.85, 1.1), rng.uniform(0, np.pi), rng.uniform(0.95, 1.35),
                   texture=chromatin)
    elif label == "PD":
        # Scattered small nuclei, often in loose clusters, in an abundant fibrillary pink neuropil.
        eos += 0.30 + 0.10 * _smooth_noise(rng, size, 4)
        eos += 0.55 * _fibres(rng, size, k)
        centres = _scatter(rng, int(rng.integers(35, 55) * area), size, 11.0 * k)
        for cy, cx in centres:
            r = rng.uniform(4.5, 7.0) * k
            _stamp(hema, cy, cx, r, r * rng.uniform(0.8, 1.1), rng.uniform(0, np.pi), rng.uniform(0.85, 1.2),
                   texture=chromatin)
    else:  # "D"
        # Abundant neuropil; a few large ganglion-like cells: wide eosinophilic cytoplasm, eccentric vesicular
        # nucleus with a prominent nucleolus; some spindle (Schwannian) nuclei.
        eos += 0.32 + 0.10 * _smooth_noise(rng, size, 4)
        eos += 0.50 * _fibres(rng, size, k)
        for cy, cx in _scatter(rng, int(rng.integers(4, 8) * area) + 1, size, 45.0 * k):
            ry, rx = rng.uniform(15, 23) * k, rng.uniform(13, 20) * k
            ang = rng.uniform(0, np.pi)
            _stamp(eos, cy, cx, ry, rx, ang, rng.uniform(0.95, 1.25), soft=2.0)
            off = rng.uniform(0.2, 0.4) * min(ry, rx)
            phi = rng.uniform(0, 2 * np.pi)
            ny, nx = cy + off * np.sin(phi), cx + off * np.cos(phi)
            rn = rng.uniform(6.5, 9.0) * k
            _stamp(hema, ny, nx, rn, rn * rng.uniform(0.85, 1.0), ang, 0.45, texture=chromatin)  # vesicular
            _stamp(hema, ny, nx, 1.8 * k + 0.6, 1.8 * k + 0.6, 0.0, 1.6)  # nucleolus
        for cy, cx in _scatter(rng, int(rng.integers(6, 14) * area), size, 14.0 * k):
            _stamp(hema, cy, cx, rng.uniform(2.0, 3.0) * k, rng.uniform(7, 11) * k, rng.uniform(0, np.pi),
                   rng.uniform(0.7, 1.0), texture=chromatin)

    h_vec = np.asarray(stain.hematoxylin, np.float32) * stain.h_scale
    e_vec = np.asarray(stain.eosin, np.float32) * stain.e_scale
    od = hema[..., None] * h_vec + eos[..., None] * e_vec + stain.background
    od += rng.standard_normal((size, size, 1), dtype=np.float32) * 0.025  # sensor and section-thickness noise
    rgb = 255.0 * np.exp(-np.clip(od, 0.0, None))
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------------------
# Descriptions
# --------------------------------------------------------------------------------------------------------------
_PHRASES: Dict[str, Dict[str, Sequence[str]]] = {
    "UD": {
        "architecture": (
            "Sheets of small round blue cells with scant cytoplasm and minimal neuropil.",
            "The tumour grows in densely packed sheets of primitive small round cells.",
            "Diffuse sheets of undifferentiated neuroblasts crowd the field with almost no intervening neuropil.",
            "Highly cellular tumour composed of closely packed small round cells.",
        ),
        "nuclei": (
            "Nuclei are small, round and hyperchromatic with a high nuclear-to-cytoplasmic ratio.",
            "The cells show dark, round nuclei with coarse 'salt-and-pepper' chromatin and scant cytoplasm.",
            "Nuclear crowding and moulding are seen; cytoplasm is barely visible.",
        ),
        "context": (
            "No ganglionic differentiation is identified.",
            "Neuropil is absent or minimal.",
            "The appearance is that of undifferentiated neuroblastoma.",
        ),
    },
    "PD": {
        "architecture": (
            "Nests of small neuroblasts set in a fibrillary pink neuropil background.",
            "Scattered small round tumour cells lie within abundant eosinophilic neuropil.",
            "Clusters of neuroblasts are separated by a fine fibrillary neuropil matrix.",
            "Neuroblastic cells are dispersed in a pink, finely fibrillary neuropil.",
        ),
        "nuclei": (
            "Nuclei are small and round with salt-and-pepper chromatin; fewer than five percent show differentiation.",
            "The neuroblasts have round hyperchromatic nuclei and little cytoplasm.",
            "Homer Wright-like rosettes with central neuropil are suggested.",
        ),
        "context": (
            "Occasional cells show early differentiation, but ganglion cells are not seen.",
            "The features are those of poorly differentiated neuroblastoma.",
            "The background neuropil is a prominent feature.",
        ),
    },
    "D": {
        "architecture": (
            "Fewer, larger ganglion-like cells with abundant eosinophilic cytoplasm in a rich neuropil.",
            "Differentiating neuroblasts and ganglion-like cells are scattered in abundant neuropil.",
            "The field is dominated by neuropil containing large cells with ample pink cytoplasm.",
            "Large ganglion-like cells with abundant cytoplasm lie in a fibrillary neuropil background.",
        ),
        "nuclei": (
            "The large cells have eccentric vesicular nuclei with prominent nucleoli.",
            "Nuclei are enlarged and vesicular, each with a single conspicuous nucleolus.",
            "Cells show synchronous nuclear and cytoplasmic differentiation with prominent nucleoli.",
        ),
        "context": (
            "More than five percent of the tumour cells show differentiation towards ganglion cells.",
            "Scattered spindle-shaped Schwannian nuclei are present.",
            "The appearance is that of differentiating neuroblastoma.",
        ),
    },
}
CLASS_KEYWORDS: Dict[str, Tuple[str, ...]] = {
    "UD": ("sheets", "packed", "small round blue", "undifferentiated"),
    "PD": ("nests of small", "clusters of neuroblasts", "dispersed", "scattered small round", "poorly differentiated",
           "homer wright"),
    "D": ("ganglion-like", "vesicular", "schwannian", "differentiating", "ample pink", "enlarged"),
}
"""Class-exclusive phrases of the descriptions above (lower case): every informative description contains one of
its class's and none of another's, so "names its class" (`names_class`) is checkable on generated text."""


def names_class(text: str, label: str, keywords: Optional[Dict[str, Sequence[str]]] = None) -> bool:
    """True when `text` contains a phrase of `label`'s and of no other class (`CLASS_KEYWORDS` by default)."""
    low = text.lower()
    hits = {c for c, words in (keywords or CLASS_KEYWORDS).items() if any(w in low for w in words)}
    return hits == {label}


_GENERIC: Sequence[str] = (
    "A tissue section stained with hematoxylin and eosin.",
    "The image shows a histological section at medium magnification.",
    "Cellular tissue is present; staining quality is adequate.",
    "A fragment of tissue with pink and purple areas is visible.",
    "The section shows tumour tissue; further evaluation is recommended.",
)
_OPENERS: Sequence[str] = ("", "Microscopically, ", "On H&E, ", "The patch shows the following. ")


def describe_label(label: str, rng: np.random.Generator) -> str:
    """A varied, class-informative pathology-style description of a patch of class `label`."""
    if label not in _PHRASES:
        raise ValueError(f"unknown label {label!r} (synthetic classes: {', '.join(CLASSES)})")
    phrases = _PHRASES[label]
    parts = [str(rng.choice(phrases["architecture"])), str(rng.choice(phrases["nuclei"]))]
    if rng.random() < 0.7:
        parts.append(str(rng.choice(phrases["context"])))
    opener = str(rng.choice(_OPENERS))
    text = " ".join(parts)
    return opener + (text[0].lower() + text[1:] if opener.endswith(", ") else text)


def noisy_description(label: str, rng: np.random.Generator, classes: Sequence[str] = CLASSES) -> str:
    """A noisy description: half of the time generic (uninformative), half of the time of a wrong class; always
    generic when `classes` has no other class to name (a one-class set)."""
    wrong = [c for c in classes if c != label and c in _PHRASES]
    if rng.random() < 0.5 or not wrong:
        return " ".join(str(x) for x in rng.choice(_GENERIC, size=2, replace=False))
    return describe_label(str(rng.choice(wrong)), rng)


# --------------------------------------------------------------------------------------------------------------
# The data set
# --------------------------------------------------------------------------------------------------------------
def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    # Level 1: several times faster than the default 6 on these noisy images, for about 10% more bytes.
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _render_item(job: Tuple[Any, ...]) -> Tuple[bytes, str]:
    """PNG bytes and description of patch `i` (a top-level function so a process pool can run it). An optional
    ninth field names the class whose morphology is painted (ambiguous patches); the description keeps `label`."""
    i, label, size, stain, seed, _, noisy, classes = job[:8]
    painted = job[8] if len(job) > 8 else label
    rng = np.random.default_rng([seed, 2, i])  # per patch: independent of the order patches are drawn in
    png = _png_bytes(render_patch(painted, size, rng, stain))
    return png, noisy_description(label, rng, classes) if noisy else describe_label(label, rng)


def make_synthetic_dataset(
    out_dir: Union[str, Path],
    n: int = 600,
    size: int = 256,
    n_slides: int = 30,
    noisy_description_rate: float = 0.2,
    seed: int = 0,
    classes: Sequence[str] = CLASSES,
    progress: bool = False,
    workers: Optional[int] = None,
    ambiguous_rate: float = 0.0,
) -> Dict[str, object]:
    """Write `n` patches to `out_dir/<class>/<class>_NNNNN.png`, `labels.csv` (file, label, slide_id) and
    `descriptions.jsonl` ({"file", "description"} per line); return a summary.

    Classes get `n // len(classes)` patches each (the first classes one more when `n` does not divide), slides
    are dealt to classes in turn (slide `i` has class `i % len(classes)`) and patches to the slides of their
    class in turn. Exactly `round(n * noisy_description_rate)` descriptions are noisy. Each slide has its own
    stain. Same arguments, same bytes, whatever `workers` (processes; default: the CPU count, 1 for small n).

    `ambiguous_rate` (default 0: off): exactly `round(n * ambiguous_rate)` patches (drawn independently of the noisy
    ones) are painted with the morphology of a class drawn uniformly from `classes`, so their image says nothing
    about their label, while their description still follows the label (unless it is one of the noisy ones):
    a set on which the text carries information the image does not (the ablation study's science test).
    """
    import os

    classes = list(classes)
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"synthetic classes must be among {', '.join(CLASSES)}; got {unknown}")
    twice = sorted({c for c in classes if classes.count(c) > 1})
    if twice:
        raise ValueError(f"synthetic classes name {', '.join(twice)} more than once; list each class once")
    if n_slides < len(classes):
        raise ValueError(f"n_slides={n_slides} must be at least the number of classes ({len(classes)})")
    if n < len(classes):
        raise ValueError(f"n={n} must be at least the number of classes ({len(classes)})")
    for name, rate in (("noisy_description_rate", noisy_description_rate), ("ambiguous_rate", ambiguous_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name}={rate} must be within [0, 1]")
    out_dir = Path(out_dir)
    own = re.compile(r"labels\.csv|descriptions\.jsonl|(?P<c>[A-Z]+)/(?P=c)_\d{5}\.png")
    with generator_output(out_dir, own, "data synth", "labels.csv, descriptions.jsonl and <class>/<class>_NNNNN.png"):
        for c in classes:
            (out_dir / c).mkdir(parents=True, exist_ok=True)
        slide_class = [classes[i % len(classes)] for i in range(n_slides)]
        slides_of = {c: [i for i, sc in enumerate(slide_class) if sc == c] for c in classes}
        stains = [random_stain(np.random.default_rng([seed, 1, i])) for i in range(n_slides)]
        noisy = set(np.random.default_rng([seed, 3]).permutation(n)[: int(round(n * noisy_description_rate))].tolist())
        pick = np.random.default_rng([seed, 4])
        ambiguous = {int(i): str(pick.choice(classes)) for i in pick.permutation(n)[: int(round(n * ambiguous_rate))]}
        dealt = {c: 0 for c in classes}
        jobs, rows, descs = [], [], []
        for i in range(n):
            label = classes[i % len(classes)]
            slide = slides_of[label][dealt[label] % len(slides_of[label])]
            dealt[label] += 1
            job = (i, label, size, stains[slide], seed, slide, i in noisy, tuple(classes))
            jobs.append(job + (ambiguous[i],) if i in ambiguous else job)
            rows.append((f"{label}/{label}_{i:05d}.png", label, f"slide-{slide:03d}"))
        filled = len({r[2] for r in rows})  # a slide holds patches of its class only: few patches leave slides empty
        if filled < n_slides:
            log.warning("data synth: %d patches fill only %d of n_slides=%d", n, filled, n_slides)
        remove_stale_files(out_dir, own, [r[0] for r in rows])  # an earlier run's extra patches
        workers = workers or (1 if n < 64 else min(os.cpu_count() or 1, 8))
        # Patches are independent (own generator), so a process pool gives the same bytes as one process, in order;
        # a stop (Ctrl-C, SIGTERM) ends its workers at once, the folder left marked incomplete for a rerun.
        with ordered_process_map(_render_item, jobs, workers) as results:
            for (rel, _, _), (png, text) in progress_bar(zip(rows, results), total=n, desc="synthetic patches",
                                                           enabled=progress):
                (out_dir / rel).write_bytes(png)
                descs.append({"file": rel, "description": text})
        with open(out_dir / "labels.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["file", "label", "slide_id"])
            writer.writerows(rows)
        with open(out_dir / "descriptions.jsonl", "w", encoding="utf-8") as f:
            for d in descs:
                f.write(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n")
        counts = {c: sum(1 for r in rows if r[1] == c) for c in classes}
        return {"out_dir": str(out_dir), "num_samples": n, "class_counts": counts, "n_slides": filled,
                "noisy_descriptions": len(noisy), "size": size, "seed": seed, "ambiguous_patches": len(ambiguous)}
