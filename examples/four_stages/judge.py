"""The scripted judge of examples/four_stages/rlhf.yaml (`judge.function: judge.py:arithmetic`): it
stands in for people ranking the cycle's samples, scoring each response to "What is a plus b?"."""

from __future__ import annotations

import re

SUM = re.compile(r"What is (\d+) plus (\d+)\?")


def arithmetic(prompts: list[str], responses: list[str]) -> list[float]:
    """1 for the right sum, 0.5 for another number, 0 for no number; a little less the longer it runs."""
    out = []
    for prompt, response in zip(prompts, responses, strict=True):
        m = SUM.search(prompt)
        numbers = re.findall(r"\d+", response)
        right = m is not None and str(int(m.group(1)) + int(m.group(2))) in numbers
        out.append((1.0 if right else 0.5 if numbers else 0.0) - 0.002 * len(response))
    return out
