"""The shape rules of the code base, checked on the source itself.

* no module over 400 lines, no function over 80 lines;
* the import graph follows the layers of DESIGN (a package imports only from its
  own layer or below) and has no cycle between packages;
* importing ``prefalign.config`` does not import torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "prefalign"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80

# Layers, top (0) to bottom; a package may import from its own layer or a higher number.
LAYERS = {
    "__init__": 0, "__main__": 0, "cli": 0,
    "pipeline": 1, "plan": 1, "sweep": 1,
    "stages": 2,
    "eval": 3, "report": 3, "export": 3, "agents": 3,
    "judges": 4, "rewards": 4, "tasks": 4, "rollout": 4,
    "engine": 5,
    "config": 6, "losses": 6, "data": 6, "models": 6,
    "ops": 7, "errors": 7, "log": 7, "discovery": 7, "intervals": 7,
}


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _package(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imported_packages(path: Path) -> set[str]:
    """Top-level prefalign packages that ``path`` imports, at any depth of the file
    (lazy imports inside functions count), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    type_checking = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                     and "TYPE_CHECKING" in ast.unparse(block.test)
                     for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "prefalign" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_package_has_a_layer():
    unknown = {_package(p) for p in _modules()} - LAYERS.keys()
    assert not unknown, f"packages with no layer in DESIGN: {sorted(unknown)}"


def test_no_module_is_too_long():
    long = {str(p.relative_to(SRC)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert not long, f"modules over {MAX_FILE_LINES} lines: {long}"


def test_no_function_is_too_long():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines})")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_imports_never_go_up_a_layer():
    upward = []
    for path in _modules():
        own = _package(path)
        for target in _imported_packages(path):
            if own in LAYERS and target in LAYERS and LAYERS[target] < LAYERS[own]:
                upward.append(f"{path.relative_to(SRC)} ({own}) imports {target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _modules():
        own = _package(path)
        graph.setdefault(own, set()).update(t for t in _imported_packages(path) if t != own)
    return graph


def test_packages_import_each_other_without_cycles():
    graph = _package_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles between packages: {cycles}"


@pytest.mark.parametrize("package", ["prefalign.config", "prefalign.errors"])
def test_light_packages_do_not_import_torch(package):
    code = f"import sys, {package}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
