"""Countdown: reach a target number from given numbers with + - * /, verified exactly.

``problems`` generates problems with known solutions and states them;
``expression`` parses and checks answers under the classic rules (each number
at most once, every intermediate a non-negative integer); ``task`` registers the
task (records, content key, verifier).
"""

from prefalign.tasks.countdown.expression import VerifyResult, extract_answer, verify
from prefalign.tasks.countdown.problems import (
    countdown_prompt,
    countdown_short_prompt,
    generate_problems,
)
from prefalign.tasks.countdown.task import TASK, CountdownVerifier, content_key

__all__ = ["TASK", "CountdownVerifier", "VerifyResult", "content_key", "countdown_prompt",
           "countdown_short_prompt", "extract_answer", "generate_problems", "verify"]
