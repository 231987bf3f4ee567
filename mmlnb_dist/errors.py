"""Exceptions shared across the package."""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: the CLI prints it as one clear message and exits with code 2."""
