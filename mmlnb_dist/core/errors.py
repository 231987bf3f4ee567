"""Exceptions shared across the package.

Every error a user can fix derives from `UserError`: the CLI prints its message (which names the key, file,
shard or sample at fault) and exits with code 2, instead of a traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: the CLI prints it as one clear message and exits with code 2."""


class ConfigError(UserError, ValueError):
    """A config value is missing, unknown or invalid; the message names the dotted key."""
