"""The tools an agent can call: deterministic mocks over fixtures, and real code execution.

- ``search(query)``: keyword search over the task set's document corpus. A query's
  content words are its lower-cased alphanumeric tokens minus stop words; a document
  matches when it holds at least half of them (at least one), and the best three
  are listed as ``[id] title: first words``, most words matched first, then title
  matches, then id. "No results." otherwise — so a question about an entity the
  corpus does not hold finds nothing, and the right answer is to say so.
- ``read_document(id)``: a document's whole text.
- ``calculator(expression)``: exact arithmetic (``+ - * / // % **``, parentheses,
  decimals) on fractions, parsed as a Python expression tree; no names, no calls.
- ``read_file(path)``: a file of the task's own folder.
- ``run_python(code)``: the code in the sandbox (:mod:`prefalign.agents.sandbox`)
  with the task's files, returning its output or its traceback.

Every tool returns text; a bad call (unknown document, malformed expression,
missing argument) returns an ``error: ...`` line rather than raising, as a tool
would to an agent.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from prefalign.agents.sandbox import SandboxLimits, run_code

STOP_WORDS = frozenset(
    "a an and are as at be by did do does for from had has have how in is it its of on "
    "or the their there this to was were what when where which who whom whose why with "
    "many much year".split())
TOKEN = re.compile(r"[a-z0-9]+")
SNIPPET_WORDS = 24
MAX_RESULTS = 3


def content_words(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens of ``text`` that are not stop words, in order."""
    return [t for t in TOKEN.findall(text.lower()) if t not in STOP_WORDS]


@dataclass(frozen=True)
class Document:
    """A corpus document: id, title and text."""

    id: str
    title: str
    text: str


@dataclass
class ToolContext:
    """What a task gives its tools: the corpus, its files, the sandbox limits."""

    documents: dict[str, Document] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    limits: SandboxLimits = field(default_factory=SandboxLimits)


def search(context: ToolContext, query: str) -> str:
    words = set(content_words(query))
    if not words:
        return "error: the query has no content words"
    need = max(1, math.ceil(len(words) / 2))
    scored = []
    for doc in context.documents.values():
        in_title = words & set(content_words(doc.title))
        matched = words & set(content_words(f"{doc.title} {doc.text}"))
        if len(matched) >= need:
            scored.append((-len(matched), -len(in_title), doc.id, doc))
    if not scored:
        return "No results."
    lines = []
    for *_, doc in sorted(scored)[:MAX_RESULTS]:
        snippet = " ".join(doc.text.split()[:SNIPPET_WORDS])
        lines.append(f"[{doc.id}] {doc.title}: {snippet}")
    return "\n".join(lines)


def read_document(context: ToolContext, id: str) -> str:  # noqa: A002 - the tool's argument
    doc = context.documents.get(str(id).strip().strip("[]"))
    if doc is None:
        return f"error: no document {id!r}"
    return f"{doc.title}\n{doc.text}"


BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
          ast.Pow: operator.pow}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPONENT = 64


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and (right.denominator != 1
                                             or abs(right) > MAX_EXPONENT):
            raise ValueError("exponents must be whole numbers of at most 64")
        return Fraction(BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_value(node.operand))
    raise ValueError(f"unsupported element {type(node).__name__}")


def format_number(value: Fraction) -> str:
    """An integer as itself; otherwise the decimal rounded to 10 significant digits."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.10g}"


def calculator(context: ToolContext, expression: str) -> str:
    text = str(expression).replace("^", "**").replace(",", "")
    if len(text) > 200:
        return "error: expression longer than 200 characters"
    try:
        return format_number(_value(ast.parse(text, mode="eval").body))
    except ZeroDivisionError:
        return "error: division by zero"
    except (SyntaxError, ValueError, TypeError) as error:
        return f"error: cannot evaluate {expression!r}: {error}"


def read_file(context: ToolContext, path: str) -> str:
    name = str(path).strip().lstrip("./")
    if name not in context.files:
        listed = ", ".join(sorted(context.files)) or "none"
        return f"error: no file {path!r} (files: {listed})"
    return context.files[name]


def run_python(context: ToolContext, code: str) -> str:
    result = run_code(str(code), files=context.files, limits=context.limits)
    parts = [f"status: {result.status}"]
    if result.stdout:
        parts.append(f"stdout:\n{result.stdout.rstrip()}")
    if result.stderr:
        parts.append(f"stderr:\n{result.stderr.rstrip()}")
    return "\n".join(parts)


@dataclass(frozen=True)
class Tool:
    """A tool: its name, one-line description, argument name, and function."""

    name: str
    description: str
    argument: str
    function: Callable[[ToolContext, str], str]

    def __call__(self, context: ToolContext, value: str) -> str:
        return self.function(context, value)


TOOLS = {tool.name: tool for tool in (
    Tool("search", "keyword search over the documents; returns up to 3 [id] title: snippet",
         "query", search),
    Tool("read_document", "the full text of a document, by its id", "id", read_document),
    Tool("calculator", "exact arithmetic: + - * / // % ** and parentheses", "expression",
         calculator),
    Tool("read_file", "a file of this task's folder, by its name", "path", read_file),
    Tool("run_python", "runs Python code (standard library only) in a sandbox with this "
         "task's files; returns its output or traceback", "code", run_python),
)}


def call_tool(name: str, value: str, context: ToolContext) -> str:
    """Call tool ``name`` with its one argument; an unknown tool is an error line."""
    tool = TOOLS.get(name)
    if tool is None:
        return f"error: unknown tool {name!r} (tools: {', '.join(TOOLS)})"
    return tool(context, value)
