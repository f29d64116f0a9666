"""The notebooks' shared setup: smoke mode, seeding."""
from __future__ import annotations

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
