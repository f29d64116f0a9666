"""The exercise checks give the right verdict and never reveal the expected value."""
from retina_lib.exercises import check_choice, check_number


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

from retina_lib.exercises import (  # noqa: E402
    check_concatenated_decoder3, check_gflops_at_paper_size, check_receptive_field, check_unet_width32_parameters,
)


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

import numpy as np  # noqa: E402

from retina_lib.exercises import (  # noqa: E402
    balance_point, check_balance_point, check_pixel_change, check_smallest_shift, check_soft_below_hard,
    check_widest_erased_line,
)

TARGET = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 1, 1]])
PREDICTION = np.array([[0, 1, 0, 0], [0, 1, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0]])


def test_pixel_change_check_computes_the_new_scores():
    found = PREDICTION.copy()
    found[0, 2] = 1  # a missed vessel pixel found: overlap 5, |P| 6, |T| 7
    assert check_pixel_change(found, PREDICTION, TARGET, dice=10 / 13, iou=5 / 8)
    assert not check_pixel_change(found, PREDICTION, TARGET, dice=0.7, iou=5 / 8)
    twice = found.copy()
    twice[3, 3] = 1
    assert not check_pixel_change(twice, PREDICTION, TARGET, dice=0.8, iou=0.7)


def test_soft_below_hard_check():
    timid = np.where(PREDICTION == 1, 0.5, 0.0)  # barely sure of every predicted pixel
    assert check_soft_below_hard(timid, PREDICTION, TARGET)
    assert not check_soft_below_hard(PREDICTION.astype(float), PREDICTION, TARGET)  # equal, not lower
    assert not check_soft_below_hard(np.full((4, 4), 0.6), PREDICTION, TARGET)    # binarises wrongly


def test_balance_points_match_the_notebook_and_theory():
    assert abs(balance_point("BCE", vessels=10) - 0.10) < 1e-3   # BCE: the vessel fraction
    assert abs(balance_point("BCE + Dice", vessels=10) - 0.14) < 0.005
    assert balance_point("Dice loss", vessels=10) is None
    assert check_balance_point(0.02, "BCE", vessels=2)
    assert check_balance_point(None, "Dice loss", vessels=2)
    assert not check_balance_point(0.5, "Dice loss", vessels=2)


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
