"""The notebooks' shared setup: smoke mode, seeding, the repository address."""
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


def test_sync_notebook_links_rewrites_badge_and_install_cell(tmp_path, monkeypatch):
    notebook = {
        "cells": [
            {"cell_type": "markdown", "id": "badge", "metadata": {}, "source": [
                "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                "(https://colab.research.google.com/github/old-owner/old-name/blob/main/notebooks/x.ipynb)"]},
            {"cell_type": "code", "id": "install", "metadata": {}, "outputs": [], "execution_count": None, "source": [
                '    !pip install --quiet --no-deps "git+https://github.com/old-owner/old-name"']},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    (tmp_path / "x.ipynb").write_text(json.dumps(notebook))
    monkeypatch.setattr(course, "REPOSITORY", "https://github.com/new-owner/new-name")
    assert course.sync_notebook_links(str(tmp_path)) == ["x.ipynb"]
    badge, install = ["".join(cell["source"]) for cell in json.loads((tmp_path / "x.ipynb").read_text())["cells"]]
    assert "github/new-owner/new-name/blob/main/notebooks/x.ipynb" in badge
    assert install.endswith('"git+https://github.com/new-owner/new-name"')
    assert course.sync_notebook_links(str(tmp_path)) == []


def test_committed_notebooks_use_the_repository_address():
    changed_if_synced = []
    folder = Path(course.__file__).resolve().parents[1] / "notebooks"
    for path in folder.glob("*.ipynb"):
        text = path.read_text(encoding="utf-8")
        if "colab.research.google.com/github/" in text:
            owner_and_name = course.REPOSITORY.removeprefix("https://github.com/")
            if f"colab.research.google.com/github/{owner_and_name}/" not in text or f"git+{course.REPOSITORY}" not in text:
                changed_if_synced.append(path.name)
    assert not changed_if_synced, f"run `python -m retina_lib.course` to update {changed_if_synced}"
