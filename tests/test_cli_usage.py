"""Usage errors of the command line, through the installed ``prefalign`` entry point.

Each kind of parser error (missing option, unknown option, unknown command, bad value)
prints click's usage block and one ``Error:`` line, exits 2, and shows no traceback,
whichever click typer raises its exceptions from (``click`` or ``typer._click``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import prefalign.cli as cli
from prefalign.errors import PrefalignError


def _entry_point() -> str:
    beside = Path(sys.executable).parent / "prefalign"
    found = str(beside) if beside.exists() else shutil.which("prefalign")
    if found is None:
        pytest.fail("the prefalign entry point is not installed (pip install -e .)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_entry_point(), *args], capture_output=True, text=True,
                          timeout=120, env={"COLUMNS": "200", "PATH": "", "LANG": "C.UTF-8"})


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("usage") / "pairs.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n')
    return path


USAGE_ERRORS = {
    "missing option": (["eval", "rm"], ["Missing option", "--model"]),
    "missing required choice": (["data", "validate", "{data}"], ["Missing option", "--kind"]),
    "unknown option": (["sft", "--bogus"], ["No such option", "--bogus"]),
    "unknown command": (["nosuchcmd"], ["No such command", "nosuchcmd"]),
    "int given text": (["plan", "--batch-size", "abc"], ["Invalid value", "--batch-size"]),
    "invalid choice": (["data", "validate", "{data}", "--kind", "nope"],
                       ["Invalid value", "--kind", "nope"]),
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_usage_error_is_one_block_and_exit_2(case, data_file):
    args, fragments = USAGE_ERRORS[case]
    out = _run(*[arg.format(data=data_file) for arg in args])
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("Usage: prefalign"), out.stderr
    assert out.stderr.count("Error:") == 1, out.stderr
    for fragment in fragments:
        assert fragment in out.stderr, (fragment, out.stderr)


def test_help_exits_0():
    out = _run("eval", "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage: prefalign eval" in out.stdout and out.stderr == ""


def _fake_app(error: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def fail() -> None:
        raise error

    @app.command()
    def other() -> None:  # two commands, so `fail` is a subcommand as in the real app
        pass

    return app


@pytest.mark.parametrize("error, code, message", [
    (typer.Exit(3), 3, ""),
    (KeyboardInterrupt(), 130, "interrupted"),
    (PrefalignError("bad input"), 2, "error: bad input"),
])
def test_exit_codes_of_a_command(monkeypatch, capsys, error, code, message):
    monkeypatch.setattr(cli, "app", _fake_app(error))
    monkeypatch.setattr(sys, "argv", ["prefalign", "fail"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == code
    assert capsys.readouterr().err.strip() == message


@pytest.mark.parametrize("module", ["click", "typer._click"])
def test_parser_errors_of_each_click_are_recognised(module):
    exceptions = pytest.importorskip(f"{module}.exceptions")
    assert cli.is_parser_error(exceptions.UsageError("x"))
    assert cli.is_parser_error(exceptions.NoSuchOption("--x"))
    assert not cli.is_parser_error(ValueError("x"))
    assert not cli.is_parser_error(PrefalignError("x"))
