"""What `predict` refuses, as `UserError`s (the command line prints them and exits with code 2)."""
from __future__ import annotations

from ..core.errors import UserError


class PredictError(UserError, RuntimeError):
    """Bad prediction arguments (output format, description file...)."""


class ModelNotFound(PredictError):
    """The model URI does not resolve to a model."""


class UnsafeModel(PredictError):
    """The model folder holds a file that would be unpickled to load (a pickled pyfunc, a torch checkpoint)."""


class ModelNotLoadable(ModelNotFound):
    """The model is there but does not load (no pyfunc flavour, its `load_context` refused it): told apart from a
    missing one, which sends the user looking for another path (a ModelNotFound still, for callers catching that)."""
