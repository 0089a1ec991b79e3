"""The ``prefalign`` command line: thin wrappers over the Python API.

Every command parses its arguments and calls the same function a user would
import. Errors caused by input print one line (``error: ...``) and exit 2; an
interrupted run exits 130 after saving a checkpoint.
"""

from __future__ import annotations

import sys

from prefalign.cli.app import app
from prefalign.engine.loop import TrainingInterrupted
from prefalign.errors import PrefalignError


def main() -> None:
    """Entry point: run the app, turning user errors into one clear line."""
    try:
        app(standalone_mode=False)
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        sys.exit(130)
    except PrefalignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except _click_exceptions() as exc:
        exc.show()
        sys.exit(exc.exit_code)


def _click_exceptions():
    import click

    return (click.exceptions.ClickException,)


__all__ = ["app", "main"]
