"""One self-contained HTML page of a comparison: the table, the figures embedded as
base64 PNG (no file or network access needed to view it) and example answers."""

from __future__ import annotations

import base64
import html
from pathlib import Path

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1200px}"
         "table{border-collapse:collapse;font-size:13px;margin-bottom:1.5em}"
         "td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top}"
         "th{background:#f2f2f2}img{max-width:100%;margin:0.5em 0}")


def embedded_image(path: Path, alt: str) -> str:
    """An ``<img>`` whose source is the PNG file itself, base64-encoded."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def html_table(header: list[str], cells: list[list[str]]) -> str:
    """A ``<table>`` of text cells under a header row, every cell HTML-escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>"
                   for line in cells)
    return f"<table><tr>{head}</tr>{body}</table>"


def comparison_html(comparison, header: list[str], cells: list[list[str]],
                    figures: dict[str, Path], examples: int = 10) -> str:
    """The page (module docstring)."""
    title = f"Policy comparison on {len(comparison.prompts)} prompts"
    intro = (f"Baseline: {comparison.baseline}; KL reference: {comparison.reference}; "
             f"judges: {', '.join(comparison.judges)}.")
    images = "".join(f"<h2>{html.escape(name)}</h2>{embedded_image(path, name)}"
                     for name, path in figures.items())
    example_cells = [[comparison.prompts[i]] + [a.texts[i] for a in comparison.answers]
                     for i in range(min(examples, len(comparison.prompts)))]
    example_table = html_table(["prompt"] + [a.label for a in comparison.answers],
                               example_cells)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(intro)}</p>{html_table(header, cells)}{images}"
            f"<h2>Examples</h2>{example_table}</body></html>\n")
