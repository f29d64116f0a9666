"""Answer checks for the notebooks' exercises.

Each notebook ends with exercises whose worked solutions are hidden in
collapsible blocks. Where an exercise has an answer that can be checked, the
learner passes their value to a small function here and reads a verdict, for
example::

    from retina_lib.exercises import check_number
    check_number(my_dice, expected=0.8, tolerance=0.005, what="Dice of P")

The checks print a verdict rather than raise, so a wrong answer never stops the
notebook; they also return True or False, so tests can call them too. That
holds for answers of the wrong kind as well: an array or tensor where one
number was asked for, a number typed as text ("44" is accepted for 44), True
or False for a number (refused: ``True == 1`` in Python, but it is not an
answer), or an argument the check cannot use (a tuple where a Sample was
expected, None for a label): each gets a "Not yet" saying what was expected.
Notebook-specific checks (which compute the expected value themselves) are
defined below the general helpers, one section per notebook.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from retina_lib.data.sample import Sample
from retina_lib.error_analysis import WidthAnalysis
from retina_lib.losses import BCEDiceLoss, DiceLoss
from retina_lib.metrics import ConfusionCounts, confusion_counts, scores_from_counts
from retina_lib.model import LinkNet, count_parameters
from retina_lib.model_stats import count_flops, linknet_encoder_receptive_fields, on_meta
from retina_lib.recipes import recipe
from retina_lib.unet import UNet
from retina_lib.widgets import shifted_prediction


def verdict(correct: bool, what: str, hint: str = "") -> bool:
    """Print a one-line verdict on the learner's answer and return ``correct``."""
    if correct:
        print(f"Correct: {what}.")
    else:
        print(f"Not yet: {what}." + (f" Hint: {hint}" if hint else ""))
    return correct


def cannot_check(what: str, problem: str) -> bool:
    """A "Not yet" verdict for an answer or argument the check cannot use, said instead of raised."""
    return verdict(False, f"{what}: {problem}")


def one_value(answer: object) -> tuple[object, str | None]:
    """``answer`` as a plain Python value, and None; or (None, what is wrong) for several values.

    Learners often pass what NumPy or PyTorch computed: ``np.float64(0.8)``,
    ``np.array(44)`` or ``tensor([0.8])`` hold one value and count as that
    value; an array of several values is not one answer.
    """
    if isinstance(answer, (np.ndarray, np.generic, torch.Tensor)):
        size = answer.numel() if isinstance(answer, torch.Tensor) else answer.size
        if size != 1:
            kind = "a tensor" if isinstance(answer, torch.Tensor) else "an array"
            return None, f"expected one value, got {kind} of shape {tuple(answer.shape)}"
        return answer.item(), None
    return answer, None


def is_number(value: object) -> bool:
    """True for int and float, not for bool: ``True == 1`` in Python, but True is not a number of steps."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_number(answer: float, expected: float, tolerance: float, what: str, hint: str = "") -> bool:
    """Whether ``answer`` is within ``tolerance`` of ``expected``.

    A one-element array or tensor counts as its value and a number typed as
    text as that number; True and False are not numbers here.
    ``expected`` is never printed for a wrong answer: the learner should find it,
    not read it.
    """
    value, problem = one_value(answer)
    if problem is not None:
        return verdict(False, f"{what}: {problem}", hint)
    if isinstance(value, bool):
        return verdict(False, f"{what}: expected a number, got {value!r}", hint)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return verdict(False, f"{what}: expected a number, got {answer!r}", hint)
    correct = bool(math.isfinite(value) and abs(value - expected) <= tolerance)  # a plain bool, also for numpy input
    return verdict(correct, f"{what} = {value:g}", hint)


def check_choice(answer: object, expected: object, what: str, hint: str = "") -> bool:
    """Whether ``answer`` equals the expected choice (a word, a number of steps, ...).

    Words are compared without regard to case and surrounding spaces. Where
    a number is expected, the same number typed as text ("44") is right and
    True or False is not; a one-element array or tensor counts as its value.
    """
    value, problem = one_value(answer)
    if problem is not None:
        return verdict(False, f"{what}: {problem}", hint)
    if isinstance(value, str) and isinstance(expected, str):
        correct = value.strip().lower() == expected.strip().lower()
    elif is_number(expected):
        correct = _as_number(value) == expected
    else:
        try:
            correct = bool(value == expected)
        except (TypeError, ValueError):  # an object whose == gives no single True or False
            correct = False
    return verdict(correct, f"{what}: {answer!r}", hint)


def _as_number(value: object) -> float | None:
    """``value`` as a number when it is one, or text that spells one ("44", " 0.5 "); else None."""
    if is_number(value):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _described(value: object) -> str:
    """A short description of an unusable argument: its type, and its shape where it has one."""
    if value is None:
        return "None"
    shape = getattr(value, "shape", None)
    return f"a {type(value).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


# ==========================================================================
# Notebook 01: inside LinkNet
# ==========================================================================

def check_receptive_field(answer: int, stage: str) -> bool:
    """Exercise 01.1: the receptive field (in input pixels) at the output of a LinkNet stage.

    Checks exercise 1 of notebook 01.
    """

    fields = linknet_encoder_receptive_fields(on_meta(LinkNet))
    if stage not in fields:
        return cannot_check("receptive field", f"stage must be one of {sorted(fields)}, got {stage!r}")
    return check_number(answer, fields[stage].size, 0, f"receptive field of {stage}",
                        hint="start from the previous stage's size and stride; each 3x3 convolution adds "
                             "2 x the current stride, and the stride doubles only after a strided layer")


def check_gflops_at_paper_size(answer: float) -> bool:
    """Exercise 01.2: LinkNet's GFLOPs for one 3 x 360 x 640 image (the paper's size), as counted here.

    Checks exercise 2 of notebook 01.
    """

    total, _ = count_flops(on_meta(LinkNet), 360, 640)
    return check_number(answer, total / 1e9, 0.05, "GFLOPs at 360 x 640",
                        hint="count_flops(meta_linknet, height, width) takes the height first")


def check_unet_width32_parameters(answer_millions: float) -> bool:
    """Exercise 01.3: parameters of ``UNet(width=32)``, in millions.

    Checks exercise 3 of notebook 01.
    """

    expected = count_parameters(on_meta(UNet, width=32)) / 1e6
    return check_number(answer_millions, expected, 0.005, "UNet(width=32) parameters (millions)",
                        hint="divide count_parameters(...) by 1e6")


def check_concatenated_decoder3(input_channels: int, extra_parameters: int) -> bool:
    """Exercise 01.4: decoder3 fed ``decoder4``'s output *stacked* with ``encoder4``'s input (``encoder3``'s output).

    The first 1x1 convolution keeps its output channels; each extra input
    channel adds one weight per output channel.

    Checks exercise 4 of notebook 01.
    """

    reduce = on_meta(LinkNet).decoder3.reduce.conv
    skip_channels = reduce.in_channels  # encoder4's input has as many channels as decoder4's output
    expected_channels = reduce.in_channels + skip_channels
    expected_extra = skip_channels * reduce.out_channels * reduce.kernel_size[0] * reduce.kernel_size[1]
    channels_right = check_number(input_channels, expected_channels, 0, "decoder3 input channels",
                                  hint="stacking adds the channels of the two tensors")
    extra_right = check_number(extra_parameters, expected_extra, 0, "extra weights of the 1x1 convolution",
                               hint="a 1x1 convolution has in_channels x out_channels weights (no bias here)")
    return channels_right and extra_right


# ==========================================================================
# Notebook 02: losses and scores
# ==========================================================================

def _hard_dice_and_iou(prediction: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two 0/1 grids, straight from the definitions."""

    p, t = np.asarray(prediction, dtype=bool), np.asarray(target, dtype=bool)
    overlap, size_p, size_t = float((p & t).sum()), float(p.sum()), float(t.sum())
    if size_p + size_t == 0:
        raise ValueError("prediction and target are both empty: Dice and IoU are undefined")
    return 2 * overlap / (size_p + size_t), overlap / (size_p + size_t - overlap)


#: Each part of exercise 02.1: what the one changed pixel must do, in words, and the test of it on
#: (Dice, IoU) before and after the change.
PIXEL_CHANGE_GOALS = {
    "Dice up": ("make Dice go up", lambda before, after: after[0] > before[0]),
    "IoU down": ("make IoU go down", lambda before, after: after[1] < before[1]),
}


def check_pixel_change(new_prediction, prediction, target, dice: float, iou: float, *, goal: str) -> bool:
    """Exercise 02.1: one pixel of P changed; did it do what ``goal`` asks, and are the hand-computed scores right?

    ``goal`` is the part of the exercise being answered: "Dice up" or
    "IoU down". A change that does not move the score the way its part asks
    is refused even when its Dice and IoU are computed correctly, because
    finding such a pixel is half of the exercise.

    Checks exercise 1 of notebook 02.
    """

    try:
        new = np.asarray(new_prediction, dtype=float)
    except (TypeError, ValueError):
        return cannot_check("new_prediction", f"expected a grid of 0s and 1s like P, got {type(new_prediction).__name__}")
    old = np.asarray(prediction, dtype=float)
    if new.shape != old.shape:
        return cannot_check("new_prediction", f"has shape {new.shape}, P has {old.shape}")
    if goal not in PIXEL_CHANGE_GOALS:
        return cannot_check("goal", f"{goal!r} is not one of {', '.join(map(repr, PIXEL_CHANGE_GOALS))}")
    changed = int((new != old).sum())
    if changed != 1:
        return verdict(False, f"{goal}: {changed} pixels differ from P", hint="change exactly one pixel")
    old_dice, old_iou = _hard_dice_and_iou(old, target)
    new_dice, new_iou = _hard_dice_and_iou(new, target)
    wanted, achieved = PIXEL_CHANGE_GOALS[goal]
    if not achieved((old_dice, old_iou), (new_dice, new_iou)):
        return verdict(False, f"this pixel does not {wanted}",
                       hint="which kind of pixel, a missed vessel or a background one, moves that score that way?")
    dice_right = check_number(dice, new_dice, 0.0005, "your Dice", hint="2 |P ∩ T| / (|P| + |T|)")
    iou_right = check_number(iou, new_iou, 0.0005, "your IoU", hint="|P ∩ T| / (|P| + |T| - |P ∩ T|)")
    return dice_right and iou_right


def check_soft_below_hard(soft, prediction, target) -> bool:
    """Exercise 02.2: a soft prediction that binarises (>= 0.5) to P but has a lower soft Dice than P's hard Dice.

    Checks exercise 2 of notebook 02.
    """

    try:
        soft = np.asarray(soft, dtype=float)
    except (TypeError, ValueError):
        return verdict(False, f"soft must be a grid of numbers in [0, 1] of P's shape, got {type(soft).__name__}")
    if soft.shape != np.shape(prediction) or soft.min() < 0 or soft.max() > 1:
        return verdict(False, "soft must be a grid of P's shape with values in [0, 1]")
    if not np.array_equal(soft >= 0.5, np.asarray(prediction, dtype=bool)):
        return verdict(False, "soft does not binarise to P at 0.5", hint="keep P's 1s at >= 0.5 and its 0s below")
    t = np.asarray(target, dtype=float)
    soft_dice = 2 * (soft * t).sum() / (soft.sum() + t.sum())
    hard_dice, _ = _hard_dice_and_iou(prediction, target)
    return verdict(bool(soft_dice < hard_dice), f"soft Dice {soft_dice:.4f} against hard Dice {hard_dice:.4f}",
                   hint="the soft Dice is lowered by low confidence on the vessels and by probability "
                        "spent on the background")


def _total_logit_gradient(loss_fn, p: float, vessels: int, pixels: int) -> float:
    """Sum over pixels of d loss / d logit when every pixel gets probability ``p``."""


    truth = torch.zeros(1, 1, 1, pixels)
    truth[..., :vessels] = 1.0
    logits = torch.full((1, 1, 1, pixels), math.log(p / (1 - p)), dtype=torch.float64, requires_grad=True)
    loss_fn(logits, truth.double())[1].backward()
    return logits.grad.sum().item()


#: The losses of notebook 02's section 5, by the names its cells print.
BALANCE_LOSSES = ("BCE", "Dice loss", "BCE + Dice")

#: Notebook 02 prints each crossing to two decimals, so a value read from it is up to 0.005 off.
PRINTED_ROUNDING = 0.005


def _balance_loss(loss_name: str):
    """The loss called ``loss_name`` in notebook 02's section 5, built the way that section builds it."""
    losses = {"BCE": BCEDiceLoss(bce_weight=1.0, dice_weight=0.0), "Dice loss": DiceLoss(),
              "BCE + Dice": BCEDiceLoss()}
    if loss_name not in losses:
        raise ValueError(f"loss_name must be one of {sorted(losses)}, got {loss_name!r}")
    return losses[loss_name]


def balance_point(loss_name: str, vessels: int, pixels: int = 100) -> float | None:
    """The shared probability where a clueless network stops moving under ``loss_name``.

    Found by bisection on the sign of the total gradient (the notebook finds it on
    a grid instead); None when the total gradient never changes sign in (0.001, 0.999).
    """

    loss_fn = _balance_loss(loss_name)
    if not 0 < vessels < pixels:
        raise ValueError(f"need 0 < vessels < pixels, got vessels={vessels}, pixels={pixels}")
    low, high = 0.001, 0.999
    gradient_low = _total_logit_gradient(loss_fn, low, vessels, pixels)
    if (gradient_low < 0) == (_total_logit_gradient(loss_fn, high, vessels, pixels) < 0):
        return None
    for _ in range(40):
        middle = (low + high) / 2
        if (_total_logit_gradient(loss_fn, middle, vessels, pixels) < 0) == (gradient_low < 0):
            low = middle
        else:
            high = middle
    return (low + high) / 2


def balance_point_tolerance(loss_name: str, vessels: int, pixels: int = 100) -> float:
    """How far an answer may lie from ``loss_name``'s balance point and still count as right.

    The exercise is about telling the losses apart, so the tolerance must reject the
    balance point of every *other* loss: it is less than half the distance to the
    nearest one (with 2 vessel pixels in 100, BCE's 0.020 and BCE + Dice's 0.029 are
    only 0.009 apart). Within that, it allows the two-decimal rounding of the
    notebook's printout, so that the values the cell prints are accepted.
    """
    expected = balance_point(loss_name, vessels, pixels)
    if expected is None:
        raise ValueError(f"{loss_name} has no balance point with {vessels} vessel pixels out of {pixels}")
    others = [balance_point(name, vessels, pixels) for name in BALANCE_LOSSES if name != loss_name]
    gaps = [abs(expected - other) for other in others if other is not None]
    return min([PRINTED_ROUNDING] + [0.49 * gap for gap in gaps])


def check_balance_point(answer: float | None, loss_name: str, vessels: int = 2, pixels: int = 100) -> bool:
    """Exercise 02.3: where ``loss_name`` wants a clueless network (one shared p) to sit.

    Answer None for a loss whose total gradient never crosses zero. A number is
    right when it is within :func:`balance_point_tolerance` of the balance point,
    which never accepts another loss's balance point.

    Checks exercise 3 of notebook 02.
    """
    if loss_name not in BALANCE_LOSSES:
        return cannot_check("balance point", f"loss_name must be one of {list(BALANCE_LOSSES)}, got {loss_name!r}")
    expected = balance_point(loss_name, vessels, pixels)
    what = f"{loss_name} with {vessels} vessel pixels out of {pixels}"
    if expected is None or answer is None:
        return verdict(expected is None and answer is None, f"{what}: {answer!r}",
                       hint="does the total gradient (bottom row) ever cross zero?")
    return check_number(answer, expected, balance_point_tolerance(loss_name, vessels, pixels), what,
                        hint="read where the total gradient crosses zero, for this loss's column")


def check_smallest_shift(answer: int, label, fov=None, blur_sigma: float = 0.0, below: float = 0.5,
                         threshold: float = 0.5) -> bool:
    """Exercise 02.4: the smallest shift (pixels to the right) at which Dice drops below ``below``.

    Checks exercise 4 of notebook 02.
    """
    what = "smallest shift"
    if np.ndim(label) != 2:
        return cannot_check(what, f"label must be the 2-D vessel label of the exercise, got {_described(label)}")
    if fov is not None and np.shape(fov) != np.shape(label):
        return cannot_check(what, f"fov must be None or have the label's shape {np.shape(label)}, "
                                  f"got {_described(fov)}")
    width = np.shape(label)[1]
    expected = None
    for shift in range(width):
        prediction = shifted_prediction(label, shift, blur_sigma)
        if scores_from_counts(confusion_counts(prediction, label, fov, threshold=threshold))["f1"] < below:
            expected = shift
            break
    if expected is None:
        raise ValueError(f"no shift up to {width - 1} pixels brings Dice below {below}: pick a lower target")
    return check_choice(answer, expected, f"smallest shift with Dice below {below} (blur {blur_sigma:g})",
                        hint="loop over shifts 0, 1, 2, ... with shifted_prediction and stop at the first one")


def check_widest_erased_line(answer: int, blur_sigma: float = 2.0, threshold: float = 0.5) -> bool:
    """Exercise 02.5: the widest straight line that a blur of ``blur_sigma`` erases at ``threshold``.

    Checks exercise 5 of notebook 02.
    """


    widest = 0
    for line_width in range(1, 33):
        line = np.zeros((64, 64), dtype=bool)
        line[:, 16:16 + line_width] = True
        if (shifted_prediction(line, 0, blur_sigma) >= threshold).any():
            break
        widest = line_width
    return check_choice(answer, widest, f"widest line erased by blur {blur_sigma:g} at threshold {threshold:g}",
                        hint="draw lines 1, 2, 3, ... pixels wide and blur each with shifted_prediction(line, 0, 2.0)")
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

    course = recipe("course")
    expected = course.epochs * math.ceil(course.samples_per_epoch / course.batch_size)
    return check_choice(answer, expected, what="optimiser steps of the course recipe",
                        hint="one step per batch: samples_per_epoch / batch_size batches in each of the epochs.")


def check_dice_against_fov(answer: float, sample) -> bool:
    """Dice of a *perfect* vessel map (the label itself) scored against the FOV mask of ``sample``."""
    if not isinstance(sample, Sample):
        return cannot_check("Dice of the label against the FOV",
                            f"sample must be a Sample (as load_dataset or synthetic_dataset give, with .label and "
                            f".fov), got {_described(sample)}")
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

def check_pooled_f1(answer: float, samples, probabilities, threshold: float, decimals: int = 4) -> bool:
    """F1 of ``probabilities`` cut at ``threshold``, pooled over the FOV pixels of ``samples``.

    ``samples`` come before their maps, as in :func:`retina_lib.widgets.browse_predictions`.

    Pass one map and one sample in lists to check the F1 of a single image.

    ``decimals`` is how precisely the learner can read the answer: 4 where it
    is computed and printed (the results table's precision), 3 where it is
    read off a widget. The tolerance is one unit of that last decimal, so a
    rounded right answer passes, while the F1 at another threshold (the
    headline one, which the exercises invite copying) differs by more.
    """

    what = f"F1 at threshold {threshold:g}"
    if not all(hasattr(argument, "__len__") for argument in (probabilities, samples)):
        return cannot_check(what, f"probabilities and samples must be lists (one map per sample), got "
                                  f"{_described(probabilities)} and {_described(samples)}")
    if len(probabilities) != len(samples):
        return cannot_check(what, f"probabilities has {len(probabilities)} maps but samples has {len(samples)}")
    if not all(isinstance(sample, Sample) for sample in samples):
        return cannot_check(what, "samples must hold Sample objects (with .label and .fov)")
    counts = ConfusionCounts(tp=0, fp=0, tn=0, fn=0)
    for probability, sample in zip(probabilities, samples):
        try:
            counts = counts + confusion_counts(probability, sample.label, sample.fov, threshold)
        except (TypeError, ValueError) as error:  # a map of another shape, or not a map at all
            return cannot_check(what, f"the map for {sample.name} cannot be scored ({error})")
    expected = scores_from_counts(counts)["f1"]
    return check_number(answer, expected, tolerance=10.0 ** -decimals, what=what,
                        hint="binarise at the threshold, count inside the FOV, pool the counts, then F1.")


def check_weakest_width_class(answer: str, analysis, method: str) -> bool:
    """The width class in which ``method`` finds the smallest share of vessel pixels.

    ``analysis`` is the :class:`retina_lib.error_analysis.WidthAnalysis` of notebook 04.
    """
    what = "weakest width class"
    if not isinstance(analysis, WidthAnalysis):
        return cannot_check(what, f"analysis must be the WidthAnalysis that sensitivity_by_width returned, "
                                  f"got {_described(analysis)}")
    if method not in analysis.sensitivity:
        return cannot_check(what, f"method must be one of {sorted(analysis.sensitivity)}, got {method!r}")
    sensitivity = analysis.sensitivity[method]
    found = [(value, name) for value, name in zip(sensitivity, analysis.classes) if value == value]  # skip NaN
    if not found:
        return cannot_check(what, f"{method} has no sensitivity in any width class (no labelled vessels)")
    expected = min(found)[1]
    given = str(answer).strip().lower()
    correct = given in {expected.lower(), expected.split()[0].lower()}  # "thin" is as good as "thin (1-3 px)"
    return verdict(correct, f"width class {method} finds least often: {answer!r}",
                   hint=f"read the sensitivity row of {method} and give the class's name (its first word is enough).")
