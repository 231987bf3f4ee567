"""Splitting samples into train / val / test: stratified by class, grouped by slide when slide ids are present.

Multi-label samples (every sample's `meta["labels"]` a list) are stratified by iterative stratification
(Sechidis et al. 2011, the `iterative-stratification` package) on the label sets of the groups, so each
label's share in val and test approaches the split fractions, not only the share of one primary label."""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import BuildConfig
from .shardset import SPLITS

if TYPE_CHECKING:
    from .build import SampleSpec

log = logging.getLogger(__name__)


def _allocate(units: List[Tuple[str, int]], fractions: Tuple[float, float], rng: np.random.Generator) -> Dict[str, str]:
    """Assign units (key, size) of one stratum to test/val/train so sample counts approach the fractions.

    Units are shuffled, then laid end to end; a unit goes to the split its midpoint falls into. With units of
    size 1 this gives `round(n * fraction)` samples per split (exact to one sample per stratum).
    A held-out split with a non-zero fraction that got no unit then takes one from train while train keeps one:
    3 slides of a class at 0.2/0.2 have no midpoint in val, and training stops without a val split. Val comes
    first (training needs it), then test; the unit moved is the train unit laid first, nearest the held-out end.
    """
    test_frac, val_frac = fractions
    order = rng.permutation(len(units))
    total = sum(size for _, size in units)
    test_end, val_end = total * test_frac, total * (test_frac + val_frac)
    out, cum = {}, 0
    for i in order:
        key, size = units[i]
        mid = cum + size / 2.0
        out[key] = "test" if mid < test_end else "val" if mid < val_end else "train"
        cum += size
    for split, fraction in (("val", val_frac), ("test", test_frac)):
        train = [units[i][0] for i in order if out[units[i][0]] == "train"]
        if fraction > 0 and split not in out.values() and len(train) >= 2:
            out[train[0]] = split
    return out


def is_multilabel(samples: Sequence[SampleSpec]) -> bool:
    """True when every sample carries a label set (`meta["labels"]`, a list): a multi-label build."""
    return bool(samples) and all(isinstance(s.meta.get("labels"), list) for s in samples)


def _iterative_assignment(units: List[Tuple[str, List[SampleSpec]]], build: BuildConfig) -> Dict[str, str]:
    """Units (key, members) to test/val/train by iterative stratification on each unit's label set.

    Test is carved first (`test_fraction` of the units), then val from the rest (`val_fraction` of all units),
    each with `MultilabelStratifiedShuffleSplit` seeded by `build.seed`. Fractions count units (slides or
    patients when grouped), as iterative stratification balances label-set rows, not their sizes. The splitter
    returns fewer units than asked when labels are rare (40 units, 30 labels, 0.2/0.2: val 2 and test 5, not
    8 and 8); the split is then topped up with units drawn at random (seeded) from the rest, as `_allocate`
    tops up an empty held-out split.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    vocab = sorted({label for _, members in units for s in members for label in s.meta["labels"]})
    index = {label: j for j, label in enumerate(vocab)}
    y = np.zeros((len(units), max(2, len(vocab))), dtype=int)  # 2 columns at least: a one-label set is still
    for i, (_, members) in enumerate(units):                  # "multilabel-indicator" to the splitter
        for s in members:
            y[i, [index[label] for label in s.meta["labels"]]] = 1
    assignment = {key: "train" for key, _ in units}
    remaining = np.arange(len(units))
    rng = np.random.default_rng(build.seed)
    for name, fraction in (("test", build.test_fraction), ("val", build.val_fraction)):
        n_take = int(round(len(units) * fraction))
        if n_take == 0 or n_take >= len(remaining):
            if n_take > 1:  # (one unit short is rounding; more is a split far smaller than asked)
                log.warning("the %s split gets none of the %d slides / samples asked (data.build.%s_fraction=%s): "
                            "only %d are left for it and train", name, n_take, name, fraction, len(remaining))
            continue
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_take, random_state=build.seed)
        _, taken = next(splitter.split(np.zeros((len(remaining), 1)), y[remaining]))
        if len(taken) < n_take:  # rare labels: the splitter stopped short of its test_size
            rest = np.setdiff1d(np.arange(len(remaining)), taken)
            taken = np.concatenate([taken, rng.choice(rest, size=n_take - len(taken), replace=False)])
        for i in remaining[taken]:
            assignment[units[i][0]] = name
        remaining = np.delete(remaining, taken)
    return assignment


def group_of(sample: SampleSpec) -> Optional[str]:
    """What a grouped split keeps whole for `sample`: its patient (a patients CSV's `patient_id`: a patient's slides
    share their tissue and diagnosis), else its slide; None for a sample with neither."""
    return sample.meta.get("patient_id") or sample.slide_id


def is_grouped(samples: Sequence[SampleSpec], build: BuildConfig) -> bool:
    """Whether the split keeps slides (or patients, a patients CSV's `patient_id`) whole: asked, and ids given."""
    return build.group_by_slide and any(group_of(s) is not None for s in samples)


def _image_of(sample: SampleSpec) -> Optional[str]:
    """The image file a sample was read from (its input path), None for an image given as bytes."""
    if sample.meta.get("file"):
        return str(sample.meta["file"])
    return str(sample.image) if isinstance(sample.image, Path) else None


def _units(samples: Sequence[SampleSpec], group: bool) -> Dict[str, List[SampleSpec]]:
    """The samples in the units a split deals whole: when grouped, each patient (`meta["patient_id"]`), else slide;
    rows that share one image file (several captions of it, Quilt-style) together in any case; else one sample.

    Ids overlap in real tables (a slide whose patient cell is empty on some rows, an image file listed under two
    slides or once without one): samples linked by any shared patient, slide or image are one unit, else that slide
    or image was dealt to two splits. A unit is named by the first (sorted) of its samples' own unit names, so a
    table without such links splits exactly as one unit per patient / slide / image / sample did."""
    images = [_image_of(s) for s in samples]
    shared = Counter(images)
    parent: Dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    own: List[str] = []
    for s, image in zip(samples, images):
        ids = [f"patient:{s.meta['patient_id']}"] if group and s.meta.get("patient_id") else []
        ids += [f"slide:{s.slide_id}"] if group and s.slide_id is not None else []
        ids += [f"image:{image}"] if image is not None and shared[image] > 1 else []
        ids = ids or [f"key:{s.key}"]
        own.append(ids[0])
        for other in ids[1:]:
            a, b = root(ids[0]), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    names: Dict[str, str] = {}  # component root -> the first own unit name among its samples
    for name in sorted(set(own)):
        names.setdefault(root(name), name)
    units: Dict[str, List[SampleSpec]] = defaultdict(list)
    for s, name in zip(samples, own):
        units[names[root(name)]].append(s)
    return units


def split_samples(samples: Sequence[SampleSpec], build: BuildConfig) -> Dict[str, List[SampleSpec]]:
    """Split samples into train/val/test: stratified by class, grouped by slide when slide ids are present.

    Grouping: each patient (`meta["patient_id"]`, a patients CSV's column) or else slide is one unit, stratified
    by its majority label (multi-label samples: by the union of its samples' label sets, with iterative
    stratification); samples without a slide id are units of their own, except rows that share one image file
    (several captions of it), which are one unit; samples linked by a shared patient, slide or image are one unit
    (`_units`).
    Deterministic for `build.seed` and the set of samples (input order does not matter).
    Each split is then shuffled with the seed, so shards mix classes and slides.
    """
    samples = sorted(samples, key=lambda s: s.key)
    group = is_grouped(samples, build)
    units = _units(samples, group)
    rng = np.random.default_rng(build.seed)
    if build.stratify and is_multilabel(samples):
        assignment = _iterative_assignment(sorted(units.items()), build)
    else:
        strata: Dict[str, List[Tuple[str, int]]] = defaultdict(list)
        for unit, members in sorted(units.items()):
            label = Counter(m.label for m in members).most_common(1)[0][0] if build.stratify else "*"
            strata[label].append((unit, len(members)))
        assignment = {}
        for label in sorted(strata):
            assignment.update(_allocate(strata[label], (build.test_fraction, build.val_fraction), rng))
    out: Dict[str, List[SampleSpec]] = {name: [] for name in SPLITS}
    for unit, members in sorted(units.items()):
        out[assignment[unit]].extend(members)
    for name in SPLITS:
        out[name].sort(key=lambda s: s.key)
        order = rng.permutation(len(out[name]))
        out[name] = [out[name][i] for i in order]
    warn_unfit_splits(samples, out, build, group)
    return out


def warn_unfit_splits(samples: Sequence[SampleSpec], splits: Dict[str, List[SampleSpec]], build: BuildConfig,
                      grouped: bool) -> None:
    """Warn when a split cannot serve its purpose: held-out patches that may share a slide with training
    patches (optimistic validation), or a held-out split left empty by too few slides (training fails later)."""
    held_out = {"val": build.val_fraction, "test": build.test_fraction}
    if not any(held_out.values()):
        return
    loose = sum(1 for s in samples if group_of(s) is None or not grouped)
    if loose:
        why = ("data.build.group_by_slide=false" if any(s.slide_id is not None for s in samples) and not grouped
               else f"{loose} of {len(samples)} samples carry no slide id")
        log.warning("splitting by patch (%s): patches of one slide can land in train and val, which inflates "
                    "validation metrics; give every sample its slide (a `slide_id` column in the labels CSV)", why)
    for name, fraction in held_out.items():
        if fraction > 0 and not splits[name]:
            if grouped:
                # the units the split dealt: patients where the samples name them, else slides
                kind = "patient(s)" if any(s.meta.get("patient_id") for s in samples) else "slide(s)"
                per_class = Counter(s.label for s in {group_of(s): s for s in samples if group_of(s)}.values())
                counts = ", ".join(f"{c} {n}" for c, n in sorted(per_class.items()))
                where = f"{sum(per_class.values())} {kind} ({counts}) are too few to give"
            else:
                where = f"{len(samples)} sample(s) are too few to give"
            log.warning("the %s split is empty: %s data.build.%s_fraction=%s a whole slide or sample of any class. "
                        "Remedies: more slides per class; a larger data.build.%s_fraction; data.build.stratify=false "
                        "(all classes share the %s budget); or data.build.group_by_slide=false (splits by tile: tiles "
                        "of one slide then land in train and %s)", name, where, name, fraction, name, name, name)
        elif fraction > 0 and not is_multilabel(samples):
            _warn_missing_classes(name, splits, grouped)


def _warn_missing_classes(name: str, splits: Dict[str, List[SampleSpec]], grouped: bool) -> None:
    """A held-out split with samples but none of a class that train has: its metrics leave that class out."""
    have = {s.label for s in splits[name]}
    for label in sorted({s.label for s in splits["train"]} - have):
        by_patient = grouped and any(s.meta.get("patient_id") for s in splits["train"])
        units = ({group_of(s) for s in splits["train"] if s.label == label} if grouped
                 else [s for s in splits["train"] if s.label == label])
        kind = "patient(s)" if by_patient else "slide(s)" if grouped else "sample(s)"
        log.warning("the %s split has no %s: its %d %s of %s are all in train, so %s metrics leave %s out. Remedies: "
                    "more %s of %s, or a larger data.build.%s_fraction", name, label, len(units), kind, label, name,
                    label, kind, label, name)
