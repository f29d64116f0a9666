"""Named recipes and how the command line turns options into a recipe."""
import pytest

from retina_lib.cli import build_parser, main, train_config
from retina_lib.recipes import RECIPES, recipe
from retina_lib.training.config import TrainConfig


def test_course_recipe_is_the_default_and_the_original_is_kept_by_name():
    assert recipe("course") == TrainConfig()
    original = recipe("original")
    assert (original.mode, original.size, original.loss, original.lr, original.batch_size, original.epochs,
            original.schedule, original.samples_per_epoch) == ("resize", 512, "dice+iou", 1e-4, 4, 100, None, None)


def test_recipe_changes_and_unknown_names():
    assert recipe("course", epochs=2).epochs == 2
    assert RECIPES["course"].epochs != 2  # the stored recipe is not modified
    with pytest.raises(ValueError, match="course, original"):
        recipe("fastest")


def parse(*words):
    return build_parser().parse_args(["train", "--dataset", "synthetic", *words])


def test_command_line_defaults_are_the_course_recipe():
    assert train_config(parse()) == recipe("course") == TrainConfig()


def test_command_line_options_change_single_settings_of_a_preset_with_the_fields_names():
    config = train_config(parse("--preset", "original", "--epochs", "3", "--mode", "crop", "--size", "256",
                                "--schedule", "cosine", "--loss", "bce+dice"))
    assert config == recipe("original", epochs=3, mode="crop", size=256, schedule="cosine", loss="bce+dice")
    assert train_config(parse("--schedule", "constant")) == recipe("course", schedule=None)


@pytest.mark.parametrize("old, new", [("--crop", "--mode crop --size PX"), ("--resize", "--mode resize --size PX")])
def test_the_old_image_options_say_their_new_spelling(capsys, old: str, new: str):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--dataset", "synthetic", old, "64"])
    assert exit_.value.code == 2
    assert f"{old} is now {new}" in capsys.readouterr().err


def test_best_recipe_is_the_course_recipe_with_the_cldice_loss_added():
    """What the docs say of ``best``: the course recipe plus the clDice loss, nothing else."""
    best, course = recipe("best"), recipe("course")
    assert best.loss == "bce+dice+cldice" and course.loss == "bce+dice"
    assert recipe("best", loss=course.loss) == course
