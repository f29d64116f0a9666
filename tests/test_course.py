"""The notebooks' shared setup: smoke mode, seeding."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from retina_lib import course


@pytest.mark.parametrize(
    "smoke, ci, expected",
    [(None, None, False), ("1", None, True), ("0", "true", False), (None, "true", True),
     (None, "0", False), ("yes", None, True), ("", "1", True)],
)
def test_smoke_mode_follows_the_environment(monkeypatch, smoke, ci, expected):
    for name, value in (("RETINA_SMOKE", smoke), ("CI", ci)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert course.smoke_mode() is expected


def test_the_test_harness_runs_in_smoke_mode():
    assert course.smoke_mode()


def test_setup_seeds_and_reports(capsys):
    first = course.setup(seed=3, device="cpu")
    a = torch.rand(3)
    course.setup(seed=3, device="cpu")
    assert torch.equal(a, torch.rand(3))
    assert first.device == torch.device("cpu")
    assert "SMOKE" in capsys.readouterr().out


@pytest.mark.parametrize("smoke, omp, expected", [(True, None, 1), (False, None, 2), (True, "2", 2), (False, "1", 2)])
def test_course_threads_one_in_smoke_mode_unless_the_learner_chose(monkeypatch, smoke, omp, expected):
    monkeypatch.setattr(course, "DEFAULT_THREADS", 2)
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert course.course_threads(smoke) == expected


@pytest.mark.parametrize("choice, environment, expected", [
    (True, "0", True),     # the learner's SMOKE = True wins over the environment
    (False, "1", False),   # SMOKE = False gives full mode even under the test harness
    (None, "1", True),     # SMOKE = None follows RETINA_SMOKE, as the tests need
    (None, "0", False),
])
def test_setup_takes_the_learners_choice_of_mode(monkeypatch, capsys, choice, environment, expected):
    monkeypatch.setenv("RETINA_SMOKE", environment)
    assert course.setup(seed=0, device="cpu", smoke=choice).smoke is expected
    assert ("SMOKE mode" in capsys.readouterr().out) is expected


def test_setup_refuses_a_mode_that_is_not_a_yes_or_no():
    with pytest.raises(TypeError, match="SMOKE must be True, False or None, got 'yes'"):
        course.setup(seed=0, device="cpu", smoke="yes")


def test_every_notebook_lets_the_learner_choose_the_mode_in_its_first_code_cell():
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
        assert "\nSMOKE = None" in "\n" + code[0], f"{path.name}: the first code cell must hold SMOKE = None"
        assert any("setup(seed=0, smoke=SMOKE)" in source for source in code), path.name


def test_setup_sets_and_reports_the_thread_count(monkeypatch, capsys):
    before = torch.get_num_threads()
    monkeypatch.setattr(course, "DEFAULT_THREADS", 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        monkeypatch.setenv("RETINA_SMOKE", "0")
        assert course.setup(seed=0, device="cpu").threads == 2
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("RETINA_SMOKE", "1")
        assert course.setup(seed=0, device="cpu").threads == 1
        assert torch.get_num_threads() == 1
        assert "CPU threads: 1" in capsys.readouterr().out.splitlines()[-1]
    finally:
        torch.set_num_threads(before)
