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


# --------------------------------------------------------------------------
# Notebook 03
# --------------------------------------------------------------------------

def check_running_average_share(answer: float, steps: int = 20, momentum: float = 0.1) -> bool:
    """Share of its starting value a BatchNorm running average still holds after ``steps`` updates.

    Each update keeps ``1 - momentum`` of the old average, so after n steps
    ``(1 - momentum) ** n`` of the start is left.
    """
    return check_number(answer, (1 - momentum) ** steps, tolerance=0.005,
                        what=f"share of the starting value left after {steps} steps",
                        hint="each step keeps 1 - momentum of the old average; apply that n times.")


def check_steps_to_forget(answer: int, share: float = 0.01, momentum: float = 0.1) -> bool:
    """The fewest updates after which a running average holds less than ``share`` of its start."""
    expected = math.ceil(math.log(share) / math.log(1 - momentum))
    if (1 - momentum) ** expected >= share:  # guard against rounding at an exact power
        expected += 1
    return check_choice(answer, expected, what=f"steps until less than {share:.0%} of the start is left",
                        hint="solve (1 - momentum) ** n < share for the smallest whole n (math.log helps).")


def check_course_steps(answer: int) -> bool:
    """How many optimiser steps the course recipe takes in all (epochs x batches per epoch)."""
    from .recipes import recipe

    course = recipe("course")
    expected = course.epochs * math.ceil(course.samples_per_epoch / course.batch_size)
    return check_choice(answer, expected, what="optimiser steps of the course recipe",
                        hint="one step per batch: samples_per_epoch / batch_size batches in each of the epochs.")


def check_dice_against_fov(answer: float, sample) -> bool:
    """Dice of a *perfect* vessel map (the label itself) scored against the FOV mask of ``sample``."""
    label, fov = sample.label.astype(bool), sample.fov.astype(bool)
    expected = 2 * (label & fov).sum() / (label.sum() + fov.sum())
    return check_number(answer, expected, tolerance=0.0005, what=f"Dice of {sample.name}'s label against its FOV",
                        hint="Dice = 2 |A and B| / (|A| + |B|), with A the label and B the FOV mask.")


def check_epochs_lost(answer: int) -> bool:
    """At most how many epochs of work an interruption costs when every epoch ends with a checkpoint."""
    return check_choice(answer, 1, what="epochs lost at most",
                        hint="fit writes checkpoint.pth after every epoch; what about the epoch that was running?")


# --------------------------------------------------------------------------
# Notebook 04
# --------------------------------------------------------------------------

def check_pooled_f1(answer: float, probabilities, samples, threshold: float) -> bool:
    """F1 of ``probabilities`` cut at ``threshold``, pooled over the FOV pixels of ``samples``.

    Pass one map and one sample in lists to check the F1 of a single image.
    """
    from .metrics import ConfusionCounts, confusion_counts, scores_from_counts

    if len(probabilities) != len(samples):
        raise ValueError(f"probabilities has {len(probabilities)} maps but samples has {len(samples)}")
    counts = ConfusionCounts(tp=0, fp=0, tn=0, fn=0)
    for probability, sample in zip(probabilities, samples):
        counts = counts + confusion_counts(probability, sample.label, sample.fov, threshold)
    expected = scores_from_counts(counts)["f1"]
    return check_number(answer, expected, tolerance=0.001, what=f"F1 at threshold {threshold:g}",
                        hint="binarise at the threshold, count inside the FOV, pool the counts, then F1.")


def check_weakest_width_class(answer: str, analysis, method: str) -> bool:
    """The width class in which ``method`` finds the smallest share of vessel pixels.

    ``analysis`` is the :class:`retina_lib.error_analysis.WidthAnalysis` of notebook 04.
    """
    sensitivity = analysis.sensitivity[method]
    found = [(value, name) for value, name in zip(sensitivity, analysis.classes) if value == value]  # skip NaN
    expected = min(found)[1]
    given = str(answer).strip().lower()
    correct = given in {expected.lower(), expected.split()[0].lower()}  # "thin" is as good as "thin (1-3 px)"
    return verdict(correct, f"width class {method} finds least often: {answer!r}",
                   hint=f"read the sensitivity row of {method} and give the class's name (its first word is enough).")
