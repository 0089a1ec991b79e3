"""The ``prefalign`` command line: thin wrappers over the Python API.

Every command parses its arguments and calls the same function a user would
import. Errors caused by input print one line (``error: ...``) and exit 2; an
interrupted run exits 130 after saving a checkpoint.

Usage errors (a missing or unknown option, an unknown command, a value of the
wrong type) are recognised by what they are, not by their class path. typer
raises click's exceptions, but which click depends on the typer version: older
releases use the ``click`` package, newer ones (0.29 among them) a vendored copy,
``typer._click``, whose classes share no base with ``click.ClickException``.
Both follow one protocol: the exception carries an integer ``exit_code`` and a
``show()`` that prints the usage block and the error. Any exception that does so
is shown and ends the process with its code (2 for usage errors). The app runs
in non-standalone mode so that ``PrefalignError`` still reaches this function;
an ``Exit`` raised inside a command (``--help``, a failed ``launch``) comes back
as its code, and a non-zero one becomes the process's exit status.
"""

from __future__ import annotations

import sys

from prefalign.cli.app import app
from prefalign.errors import PrefalignError

INTERRUPTED = 130


def main() -> None:
    """Entry point: run the app, turning user errors into one clear line."""
    try:
        code = app(standalone_mode=False)
    except PrefalignError as exc:
        if _training_interrupted(exc):
            print(f"interrupted: {exc}", file=sys.stderr)
            sys.exit(INTERRUPTED)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _exit_interrupted()
    except Exception as exc:
        if is_parser_error(exc):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click's Abort wraps Ctrl-C
            _exit_interrupted()
        raise
    if isinstance(code, int) and not isinstance(code, bool) and code:
        if code == INTERRUPTED:
            _exit_interrupted()
        sys.exit(code)


def is_parser_error(exc: BaseException) -> bool:
    """True for an exception that follows click's protocol: ``show()`` and an int ``exit_code``."""
    exit_code = getattr(exc, "exit_code", None)
    return callable(getattr(exc, "show", None)) and isinstance(exit_code, int)


def _training_interrupted(exc: PrefalignError) -> bool:
    """Whether ``exc`` is the engine's Ctrl-C exception (a checkpoint was saved).

    The engine is looked up, not imported: importing it costs seconds (transformers,
    peft) that ``--help`` and usage errors should not pay, and an exception raised by
    the engine means the engine is loaded."""
    loop = sys.modules.get("prefalign.engine.loop")
    return loop is not None and isinstance(exc, loop.TrainingInterrupted)


def _exit_interrupted() -> None:
    print("interrupted", file=sys.stderr)
    sys.exit(INTERRUPTED)


__all__ = ["app", "is_parser_error", "main"]
