"""Shared fixtures: where the real datasets are."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real CHASE_DB1 / HRF copies beside the project, or a skip with the reason."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS} (a fresh clone has no ../shared)")
    return SHARED_DATASETS
