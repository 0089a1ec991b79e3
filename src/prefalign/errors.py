"""User-facing errors: one clear line, no traceback.

Every error that bad input can cause is a ``PrefalignError``; the command line
prints ``error: <message>`` and exits with status 2. ``DataError`` carries the
file, the line number (1-based) and the field so the message can name them.
"""

from __future__ import annotations


class PrefalignError(Exception):
    """An error caused by the user's input or environment, reported in one line."""


class DataError(PrefalignError):
    """A problem in a data file, located by file, line and field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = ""
        if file is not None:
            where = f"{file}"
            if line is not None:
                where += f":{line}"
            where += ": "
        if field is not None:
            where += f"field '{field}': "
        super().__init__(where + message)


class ConfigError(PrefalignError):
    """A problem in a configuration file or override."""


class ModelError(PrefalignError):
    """A model that cannot be found or loaded."""


class RewardError(PrefalignError):
    """A reward function or verifier raised, or returned a NaN or infinite score."""
