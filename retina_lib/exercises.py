"""Answer checks for the notebooks' exercises.

Each notebook ends with exercises whose worked solutions are hidden in
collapsible blocks. Where an exercise has an answer that can be checked, the
learner passes their value to a small function here and reads a verdict, for
example::

    from retina_lib.exercises import check_number
    check_number(my_dice, expected=0.8, tolerance=0.005, what="Dice of P")

The checks print a verdict rather than raise, so a wrong answer never stops the
notebook; they also return True or False, so tests can call them too.
Notebook-specific checks (which compute the expected value themselves) are
defined below the general helpers, one section per notebook.
"""
from __future__ import annotations

import math


def verdict(correct: bool, what: str, hint: str = "") -> bool:
    """Print a one-line verdict on the learner's answer and return ``correct``."""
    if correct:
        print(f"Correct: {what}.")
    else:
        print(f"Not yet: {what}." + (f" Hint: {hint}" if hint else ""))
    return correct


def check_number(answer: float, expected: float, tolerance: float, what: str, hint: str = "") -> bool:
    """Whether ``answer`` is within ``tolerance`` of ``expected``.

    ``expected`` is never printed for a wrong answer: the learner should find it,
    not read it.
    """
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return verdict(False, f"{what}: expected a number, got {answer!r}", hint)
    correct = math.isfinite(value) and abs(value - expected) <= tolerance
    return verdict(correct, f"{what} = {value:g}", hint)


def check_choice(answer: object, expected: object, what: str, hint: str = "") -> bool:
    """Whether ``answer`` equals the expected choice (a word, a number of steps, ...)."""
    if isinstance(answer, str) and isinstance(expected, str):
        correct = answer.strip().lower() == expected.strip().lower()
    else:
        correct = answer == expected
    return verdict(correct, f"{what}: {answer!r}", hint)
