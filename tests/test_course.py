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
