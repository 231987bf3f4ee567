"""Data: the synthetic set, shard building, and the streaming loader."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..core.config import Section
from .stain_augment import StainAugmentConfig


class SynthConfig(Section):
    task: Literal["single", "multilabel"] = "single"
    """single: UD/PD/D class folders with reference descriptions (MMLNB); multilabel: patches with 1-3 of 12
    findings and noisy captions in a CSV (`shards build --task multilabel`; the CLIP recipe's demo)."""

    n: int = Field(600, ge=3)
    """Number of synthetic patches (split evenly over the three classes)."""

    size: int = Field(256, ge=32)
    """Side of each synthetic patch in pixels."""

    n_slides: int = Field(30, ge=3)
    """Number of synthetic slides the patches are drawn from (slide ids for grouped splits)."""

    noisy_description_rate: float = Field(0.2, ge=0.0, le=1.0)
    """Share of descriptions that are uninformative or describe the wrong class."""

    caption_omit_rate: float = Field(0.25, ge=0.0, le=1.0)
    """Multi-label set (`data synth --task multilabel`): chance that a caption leaves out each true finding."""

    caption_wrong_rate: float = Field(0.15, ge=0.0, le=1.0)
    """Multi-label set: chance that a caption also names a finding the patch does not show."""

    faint_rate: float = Field(0.3, ge=0.0, le=1.0)
    """Multi-label set: chance that a finding is drawn faint (present in the image, harder to see)."""

    seed: int = Field(0, ge=0)
    """Seed of the synthetic set: the same seed writes the same bytes."""


class BuildConfig(Section):
    max_samples_per_shard: int = Field(1000, ge=1)
    """Samples per tar shard before a new shard starts."""

    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    """Share of samples (or of slides, with grouping) in the validation split."""

    test_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    """Share in the held-out test split; 0 writes no test shards."""

    stratify: bool = True
    """Keep class proportions equal across splits (exact to one sample per class)."""

    group_by_slide: bool = True
    """When samples carry a slide id, keep every slide in exactly one split (no slide leakage); a patches CSV's
    `patient_id` column keeps every patient whole instead (a patient's slides share tissue and diagnosis)."""

    image_format: Literal["jpeg", "png", "original"] = "jpeg"
    """Store images re-encoded as JPEG or PNG at `image_size`, or as the original file bytes."""

    image_size: int = Field(256, ge=16)
    """Side in pixels of re-encoded images (shorter side resized, then centre-cropped square)."""

    jpeg_quality: int = Field(90, ge=1, le=100)
    """JPEG quality of re-encoded images."""

    seed: int = Field(0, ge=0)
    """Seed of the split: the same inputs and seed give byte-identical shards."""

    max_skipped_rate: float = Field(0.01, ge=0.0, le=1.0)
    """Fail the build when more than this share of input images is unreadable (they are skipped and listed)."""

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> "BuildConfig":
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1 (got {self.val_fraction} + {self.test_fraction})"
            )
        return self


class LoaderConfig(Section):
    num_workers: int = Field(2, ge=0)
    """DataLoader worker processes per rank."""

    image_size: int = Field(224, ge=16)
    """Side of the square crop a recipe feeds its image encoder."""

    augment: bool = True
    """Random flips and 90-degree rotations on training images (turn off to allow frozen-feature caching)."""

    stain: StainAugmentConfig = StainAugmentConfig()
    """Stain augmentation of training images (HED jitter), on top of the flips and rotations and only while
    `augment` is true: makes the classifier robust to slide-to-slide stain variation. Off (`kind: none`) by
    default and in the paper-faithful profiles (the paper trains without it)."""

    shuffle_buffer: int = Field(500, ge=0)
    """Samples held in the shuffle buffer of the training stream; 0 disables sample shuffling."""

    epoch_samples: Optional[int] = Field(None, ge=1)
    """Training samples per epoch across all ranks; default: the train split's size from the manifest."""

    max_bad_sample_rate: float = Field(0.01, ge=0.0, le=1.0)
    """Stop with an error when the share of bad samples (undecodable, unknown label, missing from a short shard)
    exceeds this: one global rate per epoch or evaluation across all ranks and workers (the same data gives the
    same decision with any number of workers). `describe` skips bad images under the same budget."""

    max_member_bytes: int = Field(64 * 1024 * 1024, ge=1)
    """Largest tar member (image, text, json) read into memory; a larger one stops with an error naming the shard,
    key and size instead of exhausting memory (a corrupt header or a wrong file packed into the shard)."""

    preflight: Literal["checksum", "size", "off"] = "checksum"
    """Check the shard files before `train`, `finetune-vlm` and `describe` start: `checksum` = every file present,
    its byte size and SHA-256 as in the manifest (ranks share the hashing, a thread pool reads in parallel);
    `size` = presence and byte size, plus SHA-256 of only the shards modified since the manifest was written
    (cheap on huge sets, yet an in-place edit that kept the size is caught); `off` = no check."""


class MultiLabelConfig(Section):
    """How `shards build --task multilabel` reads an image / text / label-set CSV (see docs/data.md)."""

    image_column: str = "image"
    """CSV column with the image path (relative to the CSV's folder, or absolute)."""

    text_column: str = "text"
    """CSV column with the caption or report; stored as the sample's `txt` member. An empty text drops the row."""

    labels_column: str = "labels"
    """CSV column with the sample's label set, names joined by `separator` (or a JSON list such as `["a", "b"]`)."""

    group_column: Optional[str] = None
    """CSV column with the slide or patient id that splits keep whole; default: `slide_id`, else `patient_id`,
    when the CSV has one (none: every row is its own group)."""

    separator: str = Field("|", min_length=1)
    """Separator between the label names of one cell."""

    label_merge: Optional[Path] = None
    """YAML file `target: [source, ...]` mapping labels onto one (e.g. Immune: [Immunology, Immunopathology]);
    applied before the vocabulary check, `max_labels` and `min_frequency`."""

    min_frequency: int = Field(1, ge=1)
    """Labels on fewer rows than this (after merging) are removed from the vocabulary and from every row; a row left
    without a label is dropped and reported."""

    max_labels: Optional[int] = Field(None, ge=1)
    """Rows with more labels than this (after merging) are dropped and reported; None: no limit."""


def _class_name_problem(name: str) -> str:
    """Why `name` cannot be a class (a folder name and a stripped CSV cell), or ''."""
    if not name.strip():
        return "is empty"
    if name != name.strip():
        return "starts or ends with a space (label cells are read stripped, so no label matches it)"
    if name in (".", ".."):
        return "is not a folder name"
    if "/" in name or "\\" in name:
        return "holds a path separator (a class is one folder name)"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "holds a control character (a line break or tab)"
    return ""


class DataConfig(Section):
    shards: Path = Path("shards/demo")
    """Shard set folder (holds manifest.json) that training reads."""

    classes: List[str] = ["UD", "PD", "D"]
    """Class names in index order when building shards from patches or slides (the MMLNB subtypes by default)."""

    @field_validator("classes", mode="before")
    @classmethod
    def _names_are_text(cls, classes: Any) -> Any:
        # YAML reads unquoted 1, 3.5, yes, no, null as numbers, booleans and None: class folders named after tumour
        # grades hit this, and pydantic's "Input should be a valid string" (once per item) did not say to quote
        if isinstance(classes, list):
            read = [c for c in classes if not isinstance(c, str)]
            if read:
                numbers = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in read)
                names = [str(c) for c in classes] if numbers else ["UD", "yes", "no"]  # a boolean's text is lost
                raise ValueError(f"class names are text, but YAML read {', '.join(repr(c) for c in read)} as "
                                 f"{'numbers' if numbers else 'numbers, booleans (yes/no/on/off) or null'}: quote "
                                 f"each name in a file, e.g. {names}, or give them without brackets on the command "
                                 f"line (data.classes={','.join(names)}: each as typed)")
        return classes

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, classes: List[str]) -> List[str]:
        if not classes:  # every label would be unknown: a shard build or a training with nothing to predict
            raise ValueError("no class listed: give the class names in index order, e.g. [UD, PD, D]")
        twice = sorted({c for c in classes if classes.count(c) > 1})
        if twice:  # a label maps to its first index: the other would be a class no sample can have
            raise ValueError(f"'{twice[0]}' is listed twice (each class once, in index order)")
        for name in classes:
            # a class is a folder name (data synth, shards build --input DIR) and a label cell (CSV cells are
            # stripped): '', '.', 'a/b' or ' PD' name no class folder and match no label, so every sample of
            # that class would be refused or written somewhere else
            bad = _class_name_problem(name)
            if bad:
                raise ValueError(f"class {name!r} {bad}: name each class as its folder is named, e.g. [UD, PD, D]")
        return classes

    synth_dir: Path = Path("shards/demo-src")
    """Where the demo writes the synthetic source set before building shards."""

    synth: SynthConfig = SynthConfig()
    """The embedded synthetic H&E-like data set."""

    build: BuildConfig = BuildConfig()
    """Shard building options."""

    multilabel: MultiLabelConfig = MultiLabelConfig()
    """How multi-label CSVs are read by `shards build --task multilabel`."""

    loader: LoaderConfig = LoaderConfig()
    """Streaming loader options."""
