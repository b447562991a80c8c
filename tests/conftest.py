"""Fixtures shared by the test modules: a tiny-preset models folder in the official layout."""

import pytest

from nodes_env import make_models_dir


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A folder with tiny random weights, the fake detector and ArcFace, fresh for each test module."""
    return make_models_dir(tmp_path_factory.mktemp("hp_models"))
