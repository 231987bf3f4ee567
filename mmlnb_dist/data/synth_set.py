"""Writing the synthetic source set of `data.synth` (`data synth` and the pipeline's synth stage): one owner, so
that both turn what the generator cannot do (a folder under a file, no permission, a read-only or full disk, a
refused setting) into the same one-line error naming the folder and what chose it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from ..core.errors import UserError
from .config import SynthConfig


def write_synth_set(out: Union[str, Path], s: SynthConfig, chosen_by: str,
                    classes: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Write the `s.task` synthetic set to `out` (class folders, or a pairs CSV for multilabel); its summary.
    `chosen_by`: the flag or setting that named `out` (`--out`, `data.synth_dir`), which the error tells to change.
    `classes` (`data.classes`; None: the generator's own): the classes a single-label set is painted with, so that
    the shards built from it next know every label (UD, PD and D were painted whatever data.classes said)."""
    from .synthetic import CLASSES, make_synthetic_dataset
    from .synthetic_multilabel import make_multilabel_dataset

    classes = list(CLASSES if classes is None else classes)
    unknown = [c for c in classes if c not in CLASSES]
    if s.task == "single" and unknown:
        raise UserError(f"data.classes names {', '.join(unknown)}, which the synthetic generator cannot paint (its "
                        f"classes: {', '.join(CLASSES)}); give data.classes among them to synthesise a set, or "
                        f"bring your own patches")
    try:
        if s.task == "multilabel":
            return make_multilabel_dataset(out, n=s.n, size=s.size, n_slides=s.n_slides, omit_rate=s.caption_omit_rate,
                                           wrong_rate=s.caption_wrong_rate, faint_rate=s.faint_rate, seed=s.seed,
                                           progress=True)
        return make_synthetic_dataset(out, n=s.n, size=s.size, n_slides=s.n_slides,
                                      noisy_description_rate=s.noisy_description_rate, seed=s.seed, classes=classes,
                                      progress=True)
    except UserError:
        raise
    except OSError as err:  # not a traceback, after a stage's or command's setup
        raise UserError(f"cannot write the synthetic set to {out}: {err.strerror or err} ({err.filename or out}); "
                        f"give {chosen_by} a folder that can be created and written") from None
    except ValueError as err:
        raise UserError(str(err)) from None
