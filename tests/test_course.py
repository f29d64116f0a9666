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
