"""Shared fixtures: where the real datasets are."""
from __future__ import annotations

from pathlib import Path

import pytest

from retina_lib.data.datasets import ENVIRONMENT_VARIABLE, data_root

#: The real datasets the tests read, by the folder their official archive unpacks to
#: inside the data root, and the name ``python -m retina_lib download`` knows them by.
REAL_DATASETS = {"CHASEDB1": "chase_db1", "HRF": "hrf"}


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The data root holding real CHASE_DB1 and HRF copies, or a skip that says how to get them.

    The data root is the library's own (``$RETINA_DATA_DIR``, else the user's
    cache folder), so the tests read the same copies as the notebooks and the
    command line.
    """
    root = data_root()
    missing = {folder: name for folder, name in REAL_DATASETS.items() if not (root / folder).is_dir()}
    if missing:
        downloads = " and ".join(f"`python -m retina_lib download {name}`" for name in missing.values())
        pytest.skip(f"the real {', '.join(missing)} photographs are not in the data root {root}: set "
                    f"{ENVIRONMENT_VARIABLE} to a folder holding {', '.join(f'{f}/' for f in missing)} "
                    f"or run {downloads}")
    return root
