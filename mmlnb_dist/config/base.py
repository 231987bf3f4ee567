"""The base every config section derives from.

Sections are pydantic models whose fields carry their documentation as attribute docstrings (the litgpt
style): `use_attribute_docstrings` turns each docstring into the field's description, which
`mmlnb-dist config explain` prints and tests check is present on every field.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated, docstrings document fields."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        use_attribute_docstrings=True,
        protected_namespaces=(),
    )
