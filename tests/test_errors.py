"""The user's-mistake exception: every documented user error is one, and each is still a ValueError or OSError."""
from __future__ import annotations

import pytest

from retina_lib.data import DatasetError, DownloadError
from retina_lib.errors import UserInputError
from retina_lib.training.run_folder import ResumeError
from retina_lib.training.weights import WeightsError


@pytest.mark.parametrize("error_type", [DatasetError, WeightsError, ResumeError])
def test_the_documented_user_errors_are_user_input_errors(error_type: type) -> None:
    assert issubclass(error_type, UserInputError)
    assert issubclass(error_type, ValueError), "code that catches ValueError must keep catching it"


def test_a_plain_value_error_is_not_a_user_input_error() -> None:
    assert not isinstance(ValueError("a bug"), UserInputError)


def test_a_download_error_stays_an_os_error() -> None:
    assert issubclass(DownloadError, OSError) and not issubclass(DownloadError, UserInputError)


def test_unknown_names_are_the_users_mistake() -> None:
    from retina_lib.data import load_dataset

    with pytest.raises(UserInputError, match="unknown dataset 'drvie'"):
        load_dataset("drvie", "train")
