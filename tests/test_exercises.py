"""The exercise checks give the right verdict and never reveal the expected value."""
import numpy as np
import pytest
import torch

from retina_lib.data.sample import Sample
from retina_lib.metrics import confusion_counts, scores_from_counts
from retina_lib.exercises import (
    balance_point, balance_point_tolerance, check_balance_point, check_choice, check_concatenated_decoder3,
    check_course_steps, check_dice_against_fov, check_epochs_lost, check_gflops_at_paper_size,
    check_number, check_pixel_change, check_pooled_f1, check_receptive_field,
    check_running_average_share, check_smallest_shift, check_soft_below_hard, check_steps_to_forget,
    check_unet_width32_parameters, check_weakest_width_class, check_widest_erased_line,
)


def test_check_number_accepts_within_tolerance(capsys):
    assert check_number(0.801, expected=0.8, tolerance=0.005, what="Dice")
    assert capsys.readouterr().out.startswith("Correct")


def test_check_number_refuses_and_keeps_the_answer_hidden(capsys):
    assert not check_number(0.7, expected=0.8123, tolerance=0.005, what="Dice", hint="count again")
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and "0.8123" not in out and "count again" in out


def test_check_number_refuses_non_numbers_and_nan(capsys):
    assert not check_number("abc", expected=1.0, tolerance=0.1, what="x")
    assert not check_number(float("nan"), expected=1.0, tolerance=0.1, what="x")


def test_check_choice_ignores_case_and_spaces():
    assert check_choice(" Sigmoid ", "sigmoid", what="activation")
    assert not check_choice("softmax", "sigmoid", what="activation")
    assert check_choice(3, 3, what="steps")


# Notebook 01 ----------------------------------------------------------------


def test_receptive_field_check_accepts_the_hand_computed_value_only(capsys):
    assert check_receptive_field(211, "encoder3")
    assert not check_receptive_field(32, "encoder4")  # the stride, not the receptive field
    assert "211" not in capsys.readouterr().out.split("Not yet")[-1]


def test_paper_size_flops_check_uses_the_padded_image():
    assert check_gflops_at_paper_size(20.11)       # 360 rows are padded to 384
    assert not check_gflops_at_paper_size(18.85)   # what 360 x 640 would cost without padding


def test_unet_and_concatenation_checks():
    assert check_unet_width32_parameters(7.763)
    assert not check_unet_width32_parameters(31.04)
    assert check_concatenated_decoder3(512, 256 * 64)
    assert not check_concatenated_decoder3(256, 256 * 64)


# Notebook 02 ----------------------------------------------------------------


TARGET = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 1, 1]])
PREDICTION = np.array([[0, 1, 0, 0], [0, 1, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0]])


def test_pixel_change_check_computes_the_new_scores():
    found = PREDICTION.copy()
    found[0, 2] = 1  # a missed vessel pixel found: overlap 5, |P| 6, |T| 7
    assert check_pixel_change(found, PREDICTION, TARGET, dice=10 / 13, iou=5 / 8, goal="Dice up")
    assert not check_pixel_change(found, PREDICTION, TARGET, dice=0.7, iou=5 / 8, goal="Dice up")
    twice = found.copy()
    twice[3, 3] = 1
    assert not check_pixel_change(twice, PREDICTION, TARGET, dice=0.8, iou=0.7, goal="Dice up")


def test_pixel_change_check_refuses_a_change_that_moves_the_score_the_wrong_way(capsys):
    """Right arithmetic on the wrong pixel is not an answer: each part asks for a pixel that moves a score."""
    lost = PREDICTION.copy()
    lost[0, 1] = 0  # a found vessel pixel dropped: overlap 3, |P| 4, |T| 7 -> Dice 6/11 (down), IoU 3/8 (down)
    assert not check_pixel_change(lost, PREDICTION, TARGET, dice=6 / 11, iou=3 / 8, goal="Dice up")
    assert "does not make Dice go up" in capsys.readouterr().out
    assert check_pixel_change(lost, PREDICTION, TARGET, dice=6 / 11, iou=3 / 8, goal="IoU down")
    found = PREDICTION.copy()
    found[0, 2] = 1  # Dice and IoU both go up
    assert not check_pixel_change(found, PREDICTION, TARGET, dice=10 / 13, iou=5 / 8, goal="IoU down")
    assert not check_pixel_change(found, PREDICTION, TARGET, dice=10 / 13, iou=5 / 8, goal="dice up")
    assert "'dice up' is not one of 'Dice up', 'IoU down'" in capsys.readouterr().out


def test_soft_below_hard_check():
    timid = np.where(PREDICTION == 1, 0.5, 0.0)  # barely sure of every predicted pixel
    assert check_soft_below_hard(timid, PREDICTION, TARGET)
    assert not check_soft_below_hard(PREDICTION.astype(float), PREDICTION, TARGET)  # equal, not lower
    assert not check_soft_below_hard(np.full((4, 4), 0.6), PREDICTION, TARGET)    # binarises wrongly


def test_balance_points_match_the_notebook_and_theory():
    assert abs(balance_point("BCE", vessels=10) - 0.10) < 1e-3   # BCE: the vessel fraction
    assert abs(balance_point("BCE + Dice", vessels=10) - 0.14) < 0.005
    assert balance_point("Dice loss", vessels=10) is None
    assert check_balance_point(None, "Dice loss", vessels=2)
    assert not check_balance_point(0.5, "Dice loss", vessels=2)


# Exercise 02.3's point is telling the losses apart: with 2 vessel pixels in 100, BCE sits at
# 0.020 and BCE + Dice at 0.029. The notebook prints them as 0.02 and 0.03.
@pytest.mark.parametrize("answer", [0.02, 0.0200, 0.021, 0.019])
def test_balance_point_check_accepts_bce_read_from_the_printout(answer):
    assert check_balance_point(answer, "BCE", vessels=2)


@pytest.mark.parametrize("answer", [0.03, 0.029, 0.0294])
def test_balance_point_check_accepts_bce_plus_dice_read_from_the_printout(answer):
    assert check_balance_point(answer, "BCE + Dice", vessels=2)


@pytest.mark.parametrize("answer", [
    0.03, 0.029, 0.0294,  # BCE + Dice's balance point: the nearest wrong answer
    0.011, 0.01,          # one vessel pixel's worth, or a misread axis
    0.10,                 # the section's own answer with 10 vessel pixels
    None,                 # BCE's total gradient does cross zero
])
def test_balance_point_check_refuses_wrong_answers_for_bce(answer):
    assert not check_balance_point(answer, "BCE", vessels=2)


@pytest.mark.parametrize("answer", [
    0.02, 0.0200, 0.024,  # BCE's balance point, the vessel fraction: the nearest wrong answer
    0.14,                 # the section's own answer with 10 vessel pixels
    None,
])
def test_balance_point_check_refuses_wrong_answers_for_bce_plus_dice(answer):
    assert not check_balance_point(answer, "BCE + Dice", vessels=2)


@pytest.mark.parametrize("answer", [0.02, 0.03, 0.99, 1.0])
def test_balance_point_check_refuses_any_number_for_the_dice_loss(answer):
    assert not check_balance_point(answer, "Dice loss", vessels=2)


@pytest.mark.parametrize("vessels", [2, 10])
def test_balance_point_tolerance_never_reaches_another_loss(vessels):
    points = {name: balance_point(name, vessels) for name in ("BCE", "BCE + Dice")}
    for name, point in points.items():
        other = points["BCE" if name == "BCE + Dice" else "BCE + Dice"]
        assert balance_point_tolerance(name, vessels) < abs(point - other) / 2
        assert check_balance_point(round(point, 2), name, vessels=vessels)  # the printed value
        assert not check_balance_point(other, name, vessels=vessels)


def test_smallest_shift_check_on_one_vertical_vessel():
    # a vessel 4 pixels wide shifted by s keeps 4 - s pixels of overlap: Dice = 1 - s / 4,
    # so Dice drops below 0.5 first at s = 3
    label = np.zeros((16, 32), dtype=bool)
    label[:, 10:14] = True
    assert check_smallest_shift(3, label)
    assert not check_smallest_shift(2, label)


def test_widest_erased_line_at_blur_two_is_two_pixels():
    # the centre of a w-wide line blurred by sigma is erf(w / (2 sqrt(2) sigma)); below 0.5 for w <= 2 at sigma 2
    assert check_widest_erased_line(2, blur_sigma=2.0)
    assert check_widest_erased_line(0, blur_sigma=0.5)
# Notebook 03


def test_running_average_share_is_the_momentum_power(capsys):
    assert check_running_average_share(0.1216, steps=20)
    assert not check_running_average_share(0.5, steps=20)
    assert "0.1215" not in capsys.readouterr().out


def test_steps_to_forget_is_the_first_step_below_the_share():
    assert check_steps_to_forget(44, share=0.01)  # 0.9**43 = 0.0108, 0.9**44 = 0.0097
    assert not check_steps_to_forget(43, share=0.01)
    assert check_steps_to_forget(7, share=0.5)  # 0.9**6 = 0.531, 0.9**7 = 0.478


def test_course_steps_come_from_the_recipe():
    assert check_course_steps(1000)  # 40 epochs x 100 crops / batch 4
    assert not check_course_steps(4000)


def small_sample(label_pixels: int = 10, fov_pixels: int = 40) -> Sample:
    label = np.zeros((8, 8), dtype=bool)
    fov = np.zeros((8, 8), dtype=bool)
    fov.flat[:fov_pixels] = True
    label.flat[:label_pixels] = True
    return Sample(image=np.zeros((8, 8, 3), dtype=np.float32), label=label, fov=fov, name="toy")


def test_dice_against_fov_of_a_perfect_map():
    sample = small_sample()
    assert check_dice_against_fov(2 * 10 / 50, sample)  # 0.4
    assert not check_dice_against_fov(1.0, sample)


def test_epochs_lost():
    assert check_epochs_lost(1)
    assert not check_epochs_lost(0)


# Notebook 04

def test_pooled_f1_pools_counts_over_images():
    first, second = small_sample(), small_sample(label_pixels=20)
    probabilities = [first.label.astype(np.float32) * 0.9, np.zeros((8, 8), dtype=np.float32)]
    # pooled: tp 10, fp 0, fn 20 -> F1 = 2 tp / (2 tp + fp + fn) = 20 / 40 = 0.5 (per image: 1.0 and 0.0)
    assert check_pooled_f1(0.5, [first, second], probabilities, threshold=0.5)
    assert not check_pooled_f1(0.4, [first, second], probabilities, threshold=0.5)
    assert not check_pooled_f1(0.5, [first, second], probabilities, threshold=0.95)  # nothing predicted: F1 0
    assert not check_pooled_f1(0.4, [first], probabilities, threshold=0.5)  # a verdict, not an exception


def test_pooled_f1_check_takes_the_precision_the_answer_is_read_to():
    """Notebook 04, exercise 2: the F1 at 0.5 is computed and printed to 4 decimals, and the headline F1 at the
    chosen threshold (the number the exercise tempts one to copy) lies a few 1e-4 away; exercise 3 reads the
    F1 off a widget that shows 3 decimals. One unit of the last decimal separates the two cases."""
    sample = small_sample()
    rng = np.random.default_rng(0)
    probability = np.clip(sample.label * 0.7 + rng.uniform(0, 0.6, sample.label.shape), 0, 1).astype(np.float32)
    counts = confusion_counts(probability, sample.label, sample.fov, 0.5)
    truth = scores_from_counts(counts)["f1"]
    assert check_pooled_f1(round(truth, 4), [sample], [probability], threshold=0.5)
    assert not check_pooled_f1(truth + 0.0003, [sample], [probability], threshold=0.5)
    assert check_pooled_f1(round(truth, 3), [sample], [probability], threshold=0.5, decimals=3)
    assert check_pooled_f1(truth + 0.0005, [sample], [probability], threshold=0.5, decimals=3)
    assert not check_pooled_f1(truth + 0.013, [sample], [probability], threshold=0.5, decimals=3)


def test_weakest_width_class_accepts_the_name_or_its_first_word():
    from retina_lib.error_analysis import WidthAnalysis

    analysis = WidthAnalysis(classes=["thin (1-3 px)", "medium (4-8 px)", "thick (9+ px)"],
                             pixel_share=np.array([0.2, 0.5, 0.3]), length_share=np.array([0.5, 0.3, 0.2]),
                             sensitivity={"net": np.array([0.6, 0.9, np.nan])})
    assert check_weakest_width_class("thin (1-3 px)", analysis, "net")
    assert check_weakest_width_class(" Thin ", analysis, "net")
    assert not check_weakest_width_class("medium", analysis, "net")


# Answers of the wrong kind get a verdict, never an exception (issue 18, case 19) --------------


def width_analysis():
    from retina_lib.error_analysis import WidthAnalysis

    return WidthAnalysis(classes=["thin (1-3 px)", "medium (4-8 px)", "thick (9+ px)"],
                         pixel_share=np.array([0.2, 0.5, 0.3]), length_share=np.array([0.5, 0.3, 0.2]),
                         sensitivity={"net": np.array([0.6, 0.9, np.nan])})


def one_vessel_label() -> np.ndarray:
    label = np.zeros((16, 32), dtype=bool)
    label[:, 10:14] = True
    return label


@pytest.mark.parametrize("call", [
    lambda: check_choice(np.array([3, 4]), 3, what="steps"),
    lambda: check_choice(torch.tensor([3.0, 4.0]), 3, what="steps"),
    lambda: check_course_steps(np.arange(4)),
    lambda: check_course_steps(torch.ones(2, 2)),
    lambda: check_dice_against_fov(0.4, (np.zeros((8, 8, 3)), np.zeros((8, 8)), np.ones((8, 8)))),
    lambda: check_smallest_shift(3, label=None),
    lambda: check_smallest_shift(3, one_vessel_label(), fov=np.ones((4, 4), dtype=bool)),
    lambda: check_weakest_width_class("thin", analysis=None, method="net"),
    lambda: check_weakest_width_class("thin", width_analysis(), method="another net"),
    lambda: check_number(np.array([0.8, 0.8]), expected=0.8, tolerance=0.1, what="x"),
    lambda: check_pixel_change(np.zeros((2, 2)), np.zeros((3, 3)), np.zeros((3, 3)), dice=0.5, iou=0.5,
                               goal="Dice up"),
    lambda: check_soft_below_hard(["a", "b"], np.zeros((1, 2)), np.ones((1, 2))),
    lambda: check_pooled_f1(0.5, [np.zeros((4, 4))], [small_sample()], threshold=0.5),
    lambda: check_pooled_f1(0.5, [np.zeros((8, 8))], [(1, 2, 3)], threshold=0.5),
    lambda: check_receptive_field(211, "encoder 3"),
    lambda: check_balance_point(0.02, "bce"),
], ids=["choice array", "choice tensor", "course steps array", "course steps tensor", "dice fov tuple",
        "shift label None", "shift fov shape", "width analysis None", "width unknown method", "number array",
        "pixel change shape", "soft text", "pooled f1 map shape", "pooled f1 tuple sample", "receptive stage",
        "balance loss name"])
def test_an_answer_or_argument_of_the_wrong_kind_gets_a_verdict_not_an_exception(call, capsys) -> None:
    assert call() is False
    out = capsys.readouterr().out
    assert out.startswith("Not yet") and len(out.strip().splitlines()) == 1, out


def test_the_verdict_says_what_was_expected(capsys) -> None:
    check_dice_against_fov(0.4, (1, 2, 3))
    check_smallest_shift(3, label=None)
    check_weakest_width_class("thin", analysis=None, method="net")
    check_course_steps(np.arange(4))
    out = capsys.readouterr().out.splitlines()
    assert "sample must be a Sample" in out[0] and "got a tuple" in out[0]
    assert "label must be the 2-D vessel label" in out[1] and "got None" in out[1]
    assert "analysis must be the WidthAnalysis" in out[2]
    assert "expected one value, got an array of shape (4,)" in out[3]


def test_one_value_in_an_array_or_tensor_counts_as_that_value() -> None:
    assert check_course_steps(np.int64(1000))
    assert check_course_steps(np.array(1000))
    assert check_course_steps(torch.tensor([1000]))
    assert check_number(torch.tensor(0.801), expected=0.8, tolerance=0.005, what="Dice")


def test_the_right_number_typed_as_text_is_right() -> None:
    assert check_steps_to_forget("44", share=0.01)
    assert check_steps_to_forget(" 44 ", share=0.01)
    assert check_steps_to_forget(44.0, share=0.01)
    assert not check_steps_to_forget("43", share=0.01)
    assert not check_steps_to_forget("forty-four", share=0.01)
    assert check_number("0.801", expected=0.8, tolerance=0.005, what="Dice")


@pytest.mark.parametrize("flag", [True, np.bool_(True), torch.tensor(True)])
def test_true_is_not_the_number_1(flag) -> None:
    assert not check_number(flag, expected=1, tolerance=0, what="x")
    assert not check_epochs_lost(flag)
    assert not check_choice(flag, 1, what="x")


# Every numeric check: the right answer (as the solution or a printout gives it) passes, and the
# nearest wrong answer the exercise invites fails. ----------------------------------------------


@pytest.mark.parametrize("answer, right", [
    (211, True),
    (227, False),  # 99 + 2 x 16 + 3 x 32: the strided convolution widened with the new stride
    (163, False),  # 99 + 2 x 8 + 3 x (2 x 8): the stride never doubled
    (195, False),  # 99 + 2 x 16 + 3 x (2 x 16) - 32: one convolution too few
    (243, False),  # encoder 4's first step
])
def test_receptive_field_check_separates_the_nearest_wrong_answers(answer, right):
    assert check_receptive_field(answer, "encoder3") is right


@pytest.mark.parametrize("answer, right", [
    (20.11, True), (20.1, True),
    (21.45, False),  # the 512 x 512 count of section 5
    (21.2, False),   # the paper's figure
    (18.85, False),  # 360 x 640 without the padding
    (10.05, False),  # multiply-adds instead of FLOPs
])
def test_paper_size_flops_check_separates_the_nearest_wrong_answers(answer, right):
    assert check_gflops_at_paper_size(answer) is right


@pytest.mark.parametrize("answer, right", [
    (7.76, True), (7.763, True),
    (7.8, False),      # rounded too far for a count the exercise asks to two decimals
    (31.04 / 4, True), # a quarter of the full U-Net is the right reasoning (7.76)
    (31.04, False),    # the full U-Net
    (11.53, False),    # LinkNet
    (7763041, False),  # not in millions
])
def test_unet_width32_check_separates_the_nearest_wrong_answers(answer, right):
    assert check_unet_width32_parameters(answer) is right


@pytest.mark.parametrize("dice, iou, right", [
    (10 / 13, 5 / 8, True), (0.7692, 0.625, True),
    (8 / 13, 4 / 9, False),    # the false alarm's scores, not the found pixel's
    (2 / 3, 0.5, False),       # the scores before the change
    (10 / 13, 10 / 13, False), # Dice typed for IoU
])
def test_pixel_change_check_separates_the_nearest_wrong_answers(dice, iou, right):
    found = PREDICTION.copy()
    found[0, 2] = 1
    assert check_pixel_change(found, PREDICTION, TARGET, dice=dice, iou=iou, goal="Dice up") is right


@pytest.mark.parametrize("answer, right", [
    (0.1216, True), (0.12, True),
    (0.9 ** 19, False), (0.9 ** 21, False),  # one step too few or too many
    (0.1 ** 20, False),                      # momentum kept instead of 1 - momentum
])
def test_running_average_share_check_separates_the_nearest_wrong_answers(answer, right):
    assert check_running_average_share(answer, steps=20) is right


@pytest.mark.parametrize("answer, right", [(44, True), (43, False), (45, False)])
def test_steps_to_forget_check_separates_the_neighbours(answer, right):
    assert check_steps_to_forget(answer, share=0.01) is right


@pytest.mark.parametrize("answer, right", [
    (0.4, True),
    (2 * 10 / 40, False),  # |A and B| / |B| doubled: the FOV's size counted once
    (10 / 40, False),      # the label's share of the FOV
    (1.0, False),          # an empty network against the FOV
])
def test_dice_against_fov_check_separates_the_nearest_wrong_answers(answer, right):
    assert check_dice_against_fov(answer, small_sample()) is right
