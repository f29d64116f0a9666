"""The measured results travel inside the package and load by name."""
from __future__ import annotations

import fnmatch
import json
from dataclasses import replace
import sys
from pathlib import Path

import pytest

from retina_lib.cli import build_parser, train_config
from retina_lib.pretrained import load_card
from retina_lib.course_results import available_results, load_result
from retina_lib.recipes import recipe

REPOSITORY = Path(__file__).resolve().parents[1]
MEASURED = REPOSITORY / "retina_lib" / "course_results"

#: The names the notebooks read (notebooks 03 and 04 call load_result with these).
NOTEBOOK_NAMES = (
    "ablation",
    "chase_db1/course_cpu_history",
    "chase_db1/test_course_cpu",
    "chase_db1/test_course_h200",
    "chase_db1/test_original_h200",
    "hrf/test_course_cpu_chase_threshold",
    "chase_db1/best_sweep",
    "chase_db1/test_course_cpu_tta",
    "chase_db1/test_best_cpu",
    "chase_db1/test_best_cpu_tta",
    "hrf/test_best_cpu_chase_threshold",
)


def test_every_stored_file_is_listed_and_loads_as_a_dict() -> None:
    on_disk = sorted(path.relative_to(MEASURED).with_suffix("").as_posix() for path in MEASURED.rglob("*.json"))
    assert available_results() == on_disk
    assert set(NOTEBOOK_NAMES) <= set(on_disk)
    for name in on_disk:
        result = load_result(name)
        assert isinstance(result, dict) and result, name
        assert result == json.loads((MEASURED / f"{name}.json").read_text()), name


def test_the_best_preset_and_the_shipped_network_come_from_the_best_sweep() -> None:
    """``best`` is the recipe that won the sweep at the course's length (at most 40 epochs); the shipped
    network (retina_lib.pretrained) is the sweep's overall winner: the same recipe at 80 epochs."""
    sweep = load_result("chase_db1/best_sweep")
    first_seeds = [name for name in sweep if "_seed" not in name]  # other seeds measure noise, they do not compete

    def config(name: str):
        return train_config(build_parser().parse_args(sweep[name]["command"].split()[3:]))  # drop "python -m retina_lib"

    def f1(name: str) -> float:
        return sweep[name]["validation"]["f1"]

    at_course_length = max((name for name in first_seeds if config(name).epochs <= 40), key=f1)
    assert config(at_course_length) == recipe("best")
    overall = max(first_seeds, key=f1)
    assert config(overall) == replace(recipe("best"), epochs=80)
    assert load_card()["command"] == sweep[overall]["command"]


def test_the_same_command_on_the_same_cpu_gave_the_same_history() -> None:
    """results/README.md says the course run was repeated on the same kind of CPU (a quiet one) and gave the
    very same numbers; only the time per epoch differs. A rerun on another CPU (the Intel one) did not."""
    first, quiet = load_result("chase_db1/course_cpu_history"), load_result("chase_db1/course_cpu_quiet_history")
    assert first.keys() == quiet.keys()
    assert {key: first[key] for key in first if key != "epoch_seconds"} == \
        {key: quiet[key] for key in quiet if key != "epoch_seconds"}
    assert sum(quiet["epoch_seconds"]) < sum(first["epoch_seconds"])
    rerun = load_result("chase_db1/course_cpu_rerun_history")
    assert rerun["train_loss"] != first["train_loss"]


@pytest.mark.parametrize("name, hint", [("ablations", ""), ("ablation.json", "without .json"),
                                        ("../results/ablation", "")])
def test_unknown_name_lists_the_stored_ones(name: str, hint: str) -> None:
    with pytest.raises(ValueError, match="stored ones are: ablation, chase_db1/best_sweep") as error:
        load_result(name)
    assert repr(name) in str(error.value) and hint in str(error.value)


def test_one_copy_only_nothing_left_in_results() -> None:
    assert not list((REPOSITORY / "results").rglob("*.json")), "measured results live in retina_lib/course_results"


def test_package_data_patterns_cover_every_file() -> None:
    """A file the pyproject patterns miss would be absent from a `pip install git+...` (not editable)."""
    # tomllib is in the standard library from Python 3.11; tomli (declared for 3.10) is the same parser
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    config = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["retina_lib.course_results"]

    def covered(relative: str) -> bool:  # setuptools globs match one path component per "*"
        parts = relative.split("/")
        return any(len(pattern.split("/")) == len(parts)
                   and all(fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, pattern.split("/")))
                   for pattern in patterns)

    for path in MEASURED.rglob("*.json"):
        assert covered(path.relative_to(MEASURED).as_posix()), f"{path} is not in the package-data patterns"
