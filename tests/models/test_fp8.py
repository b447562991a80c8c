"""fp8 weight storage (hp_core.models.fp8): half the bytes of fp16, and exactly the result of a plain network
whose weights were rounded to fp8 and cast back (the oracle), through encoding and a whole sampling run."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hp_core import pipeline as P
from hp_core.models import fp8_networks, precision_dtypes
from hp_core.models.fp8 import FP8, compute_dtype, store_fp8, stored_bytes

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def rounded_copy(module: nn.Module) -> nn.Module:
    """The oracle: a plain copy whose Linear/conv weights went to fp8 and back, written without the module
    under test."""
    plain = copy.deepcopy(module)
    with torch.no_grad():
        for layer in plain.modules():
            if isinstance(layer, LAYERS):
                layer.weight.copy_(layer.weight.to(torch.float8_e4m3fn).to(layer.weight.dtype))
    return plain


@pytest.fixture(scope="module")
def pair():
    models = P.random_models("tiny", seed=0)
    oracle = P.PortraitModels(**{**models.__dict__, "unet": rounded_copy(models.unet),
                                 "dino": rounded_copy(models.dino)})
    fp8 = P.PortraitModels(**{**models.__dict__, "unet": store_fp8(copy.deepcopy(models.unet), torch.float32),
                              "dino": store_fp8(copy.deepcopy(models.dino), torch.float32)})
    return models, oracle, fp8


def test_fp8_stores_weights_in_one_byte_and_computes_in_the_compute_dtype(pair):
    models, _, fp8 = pair
    for layer in fp8.unet.modules():
        if isinstance(layer, LAYERS):
            assert layer.parametrizations.weight.original.dtype == FP8
            assert layer.weight.dtype == torch.float32  # read in the compute dtype
    assert compute_dtype(fp8.unet) == torch.float32
    half = stored_bytes(copy.deepcopy(models.unet).half())
    print(f"tiny UNet stored bytes: fp16 {half}, fp8 {stored_bytes(fp8.unet)}")
    # the Linear/conv weights are nearly all of a UNet: fp8 takes a little over half of fp16
    assert stored_bytes(fp8.unet) < 0.56 * half


def test_fp8_equals_the_rounded_weights_oracle_through_a_sampling_run(pair):
    _, oracle, fp8 = pair
    settings = P.Settings(steps=1, height=64, width=64, window=4, overlap=1, pad=1)
    g = torch.Generator().manual_seed(3)
    d = oracle.dims
    image, identity = torch.randn(1, 3, d.appearance_size, d.appearance_size, generator=g), torch.randn(512, generator=g)
    crops, poses = torch.rand(5, 3, 64, 64, generator=g), torch.rand(5, 3, 64, 64, generator=g)
    ref_img = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    out = []
    for models in (oracle, fp8):
        app = P.encode_appearance(models, image, identity)
        motion = P.encode_motion(models, crops, poses, [(7, 11)])
        ref, cond = P.encode_reference(models, ref_img)
        out.append((app, P.sample_latents(models, P.build_conditions(app, motion.tokens, cond, None, settings), ref,
                                          settings)))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=0, atol=0)  # DINO + projector
    torch.testing.assert_close(out[1][1], out[0][1], rtol=0, atol=0)  # the whole sampling run


def test_fp8_differs_from_the_unrounded_network(pair):
    """The oracle test above is not vacuous: rounding to fp8 does change the UNet's weights."""
    models, oracle, _ = pair
    assert not torch.equal(models.unet.conv_in.weight, oracle.unet.conv_in.weight)


def test_fp8_is_a_precision_choice_everywhere():
    assert fp8_networks("fp8") == ("unet", "dino") and fp8_networks("auto") == ()
    assert precision_dtypes("fp8", "cpu") == precision_dtypes("auto", "cpu")
    assert precision_dtypes("fp8", "cuda")["unet"] == torch.float16
