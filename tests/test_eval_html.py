"""The comparison page opens in a real headless browser and its figures render.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); skipped without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from prefalign.eval.compare import CompareSettings, Comparison, PolicyAnswers
from prefalign.eval.compare_report import write_comparison
from prefalign.eval.compare_table import comparison_rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(apt-get install -y chromium) so the page cannot be rendered")
PROBE = ("<script>window.addEventListener('load',()=>{for(const i of document.images)"
         "{i.setAttribute('data-natural-width',i.naturalWidth)}})</script></body>")


class Letters:
    name = "letters"
    required_fields = ()


def _comparison() -> tuple[Comparison, list]:
    answers = []
    for label, texts, shift in (("base", ["4", "Sure! 5", "six", "7"], 0.0),
                                ("tuned", ["4", "5", "6", "seven and more"], 0.3)):
        answer = PolicyAnswers(label, label, 1, texts, [len(t) for t in texts])
        answer.scores = {"letters": [shift + 0.1 * i for i in range(4)]}
        answer.kl = {"kl_k1_seq": shift, "kl_k3_seq": shift, "kl_k1_token": shift / 3,
                     "kl_k3_token": shift / 3}
        answers.append(answer)
    judges = [Letters()]
    rows = comparison_rows(answers, judges, 0, resamples=200)
    prompts = ["2+2", "2+3", "3+3", "3+4"]
    return Comparison(rows, answers, prompts, "base", "base", ["letters"],
                      CompareSettings()), judges


def _natural_widths(page) -> list[int]:
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("</body>", PROBE))
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-background-networking", "--virtual-time-budget=5000",
                          "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]


def test_figures_render_in_a_headless_browser(tmp_path):
    comparison, judges = _comparison()
    paths = write_comparison(comparison, tmp_path, judges)
    widths = _natural_widths(paths["html"])
    assert len(widths) == 3 and all(w > 0 for w in widths), widths


def test_a_broken_image_is_detected(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><img src='data:image/png;base64,AAAA'></body></html>")
    assert _natural_widths(page) == [0]
