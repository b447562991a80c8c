"""Fixtures shared by the test modules: the tiny preset's random models (shared, read-only) and a tiny-preset
models folder in the official layout."""

import hashlib

import pytest
import torch

from hp_core import pipeline as P
from nodes_env import make_models_dir


SETTINGS_ON_MODULES = ("motion_scale", "sdpa_backend", "context_mode", "present")  # what a run sets on layers


def _fingerprint(models) -> str:
    """A digest of every network's weights, dtypes and devices, the run settings left on its layers, and
    its hooks."""
    digest = hashlib.sha256()
    for name in P.COMPONENTS + ("vae",):
        network = getattr(models, name)
        for key, t in network.state_dict().items():
            digest.update(f"{name}.{key}:{t.dtype}:{t.device}:{tuple(t.shape)}".encode())
            digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        for path, module in network.named_modules():
            state = [repr(getattr(module, a, None)) for a in SETTINGS_ON_MODULES]
            hooks = len(module._forward_hooks) + len(module._forward_pre_hooks)
            digest.update(f"{name}.{path}:{state}:{hooks}".encode())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def _shared_tiny_models():
    models = P.random_models("tiny", seed=0)
    return {"models": models, "fingerprint": _fingerprint(models)}


@pytest.fixture
def tiny_models(_shared_tiny_models):
    """The tiny preset's random models (seed 0), made once for the whole run. Read-only: a test that changes a
    weight, a dtype, a device, a setting left on a layer (motion scale, attention backend, ...) or leaves a
    hook fails here (and the set is made afresh, so the tests after it are not blamed); a test that needs to
    change them makes its own with P.random_models("tiny", seed=0)."""
    shared = _shared_tiny_models
    yield shared["models"]
    if _fingerprint(shared["models"]) != shared["fingerprint"]:
        shared["models"] = P.random_models("tiny", seed=0)
        pytest.fail("the test changed the shared tiny models")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A folder with tiny random weights, the fake detector and ArcFace, fresh for each test module."""
    return make_models_dir(tmp_path_factory.mktemp("hp_models"))
