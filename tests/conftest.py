"""Fixtures shared by the test modules: the tiny preset's random models (shared, read-only) and a tiny-preset
models folder in the official layout."""

import hashlib

import pytest
import torch

from hp_core import pipeline as P
from nodes_env import make_models_dir


def _fingerprint(models) -> str:
    """A digest of every network's weights, dtypes and devices."""
    digest = hashlib.sha256()
    for name in P.COMPONENTS + ("vae",):
        for key, t in getattr(models, name).state_dict().items():
            digest.update(f"{name}.{key}:{t.dtype}:{t.device}:{tuple(t.shape)}".encode())
            digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def _shared_tiny_models():
    models = P.random_models("tiny", seed=0)
    return models, _fingerprint(models)


@pytest.fixture
def tiny_models(_shared_tiny_models):
    """The tiny preset's random models (seed 0), made once for the whole run. Read-only: a test that changes a
    weight, a dtype or a device fails here; it should make its own with P.random_models("tiny", seed=0)."""
    models, before = _shared_tiny_models
    yield models
    assert _fingerprint(models) == before, "the test changed the shared tiny models"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A folder with tiny random weights, the fake detector and ArcFace, fresh for each test module."""
    return make_models_dir(tmp_path_factory.mktemp("hp_models"))
