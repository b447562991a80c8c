"""PortraitUNet keeps diffusers' UNetSpatioTemporalConditionModel contract: upsample sizes for odd latent
sides, return_dict, num_motion_tokens in the config, and a key mask honoured by the adapter attention."""

import pytest
import torch
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.models.attention_processor import Attention

from hp_core.errors import HPError
from hp_core.models import build_component
from hp_core.models.unet import AdapterAttnProcessor, PortraitUNet
from hp_core.pipeline import Settings


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return build_component("unet", "tiny")


@pytest.mark.parametrize("hw", [(9, 9), (7, 10)])  # a 72 px output: latent side 9, not a multiple of 2
def test_odd_latent_sides_match_the_parent_forward(unet, hw):
    sample = torch.randn(2, 3, 8, *hw)
    ctx = torch.randn(2, 16, 32)
    ids = torch.tensor([[12.5, 0, 0]] * 2)
    with torch.no_grad():
        ours = unet(sample, 0.4, ctx, ids)  # (B, N, C) context: the same tokens for every frame
        parent = UNetSpatioTemporalConditionModel.forward(unet, sample, 0.4, ctx, ids, return_dict=False)[0]
    assert ours.shape == (2, 3, 4, *hw)
    torch.testing.assert_close(ours, parent, rtol=1e-5, atol=1e-5)


def test_return_dict(unet):
    args = (torch.randn(1, 2, 8, 8, 8), 0.4, torch.randn(1, 2, 16, 32), torch.tensor([[12.5, 0, 0]]))
    with torch.no_grad():
        bare = unet(*args)
        as_dict = unet(*args, return_dict=True)
        as_tuple = unet(*args, return_dict=False)
    assert torch.is_tensor(bare) and isinstance(as_tuple, tuple) and len(as_tuple) == 1
    assert torch.equal(as_dict.sample, bare) and torch.equal(as_tuple[0], bare)


def test_num_motion_tokens_reaches_config_and_round_trips(unet):
    assert unet.config.num_motion_tokens == 8
    config = dict(unet.config)
    config["num_motion_tokens"] = 5
    rebuilt = PortraitUNet.from_config(config)
    assert rebuilt.config.num_motion_tokens == 5
    procs = [p for p in rebuilt.attn_processors.values() if isinstance(p, AdapterAttnProcessor)]
    assert procs and {p.num_motion_tokens for p in procs} == {5}


def test_key_mask_equals_dropping_the_masked_tokens():
    torch.manual_seed(1)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4)
    proc = AdapterAttnProcessor(8, 6, num_motion_tokens=2)
    x, app, mot = torch.randn(2, 5, 8), torch.randn(2, 4, 6), torch.randn(2, 2, 6)
    keep = torch.tensor([True, False, True, False, True, True])
    with torch.no_grad():
        masked = proc(attn, x, encoder_hidden_states=torch.cat([app, mot], 1),
                      attention_mask=keep.expand(2, -1))
        dropped = proc(attn, x, encoder_hidden_states=torch.cat([app[:, [0, 2]], mot], 1))
        additive = proc(attn, x, encoder_hidden_states=torch.cat([app, mot], 1),
                        attention_mask=torch.where(keep, 0.0, -torch.inf).expand(2, 1, -1))
    torch.testing.assert_close(masked, dropped, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(additive, dropped, rtol=1e-5, atol=1e-6)
    with pytest.raises(HPError, match="key mask"):
        proc(attn, x, encoder_hidden_states=torch.cat([app, mot], 1), attention_mask=torch.ones(2, 5, 6))


def test_library_and_cli_agree_on_sizes():
    from hp_core.cli import _check_animate_args, build_parser

    def cli_ok(size):
        args = build_parser().parse_args(["animate", "--image", "a.png", "--video", "b.mp4", "--out", "c.mp4",
                                          "--size", str(size)])
        try:
            _check_animate_args(args)
            return True
        except HPError:
            return False

    def lib_ok(size):
        try:
            Settings(height=size, width=size).validate()
            return True
        except HPError:
            return False

    for size in (64, 72, 520, 512, 60, 100, 0):
        assert cli_ok(size) == lib_ok(size), size
    assert cli_ok(72) and not cli_ok(60)
