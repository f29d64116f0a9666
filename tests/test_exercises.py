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
