"""Named recipes and how the command line turns options into a recipe."""
import pytest

from retina_lib.cli import build_parser, train_config
from retina_lib.recipes import RECIPES, recipe
from retina_lib.training.trainer import TrainConfig


def test_original_recipe_is_the_original_material():
    original = recipe("original")
    assert (original.mode, original.size, original.optimise, original.lr, original.batch_size, original.epochs) == (
        "resize", 512, "dice+iou", 1e-4, 4, 100)
    assert original == TrainConfig()


def test_recipe_changes_and_unknown_names():
    assert recipe("course", epochs=2).epochs == 2
    assert RECIPES["course"].epochs != 2  # the stored recipe is not modified
    with pytest.raises(ValueError, match="original, course"):
        recipe("fastest")


def parse(*words):
    return build_parser().parse_args(["train", "--dataset", "synthetic", *words])


def test_command_line_defaults_are_the_original_recipe():
    assert train_config(parse()) == recipe("original")


def test_command_line_options_change_single_settings_of_a_preset():
    config = train_config(parse("--preset", "course", "--epochs", "3", "--resize", "256", "--schedule", "constant"))
    assert config == recipe("course", epochs=3, mode="resize", size=256, schedule=None)
    assert train_config(parse("--crop", "384")) == recipe("original", mode="crop", size=384)


def test_best_recipe_is_the_course_recipe_with_the_cldice_loss_added():
    """What the docs say of ``best``: the course recipe plus the clDice loss, nothing else."""
    best, course = recipe("best"), recipe("course")
    assert best.optimise == "bce+dice+cldice" and course.optimise == "bce+dice"
    assert recipe("best", optimise=course.optimise) == course
