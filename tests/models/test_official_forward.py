"""Full-size networks run a forward pass with the official configuration (slow: ~2 B parameters on a CPU).

Random weights; what is checked is that every official width, head count and token count fits together
the way the pipeline chains them (DINO 261 tokens -> projector 64 x 1024, refiner 64 x 1018 + 6 = the
UNet's 1024-wide context, pose guider 320 channels = conv_in's output)."""

import pytest
import torch

from hp_core.models import PRESET_DIMS, build_component
from hp_core.models.motion_refiner import motion_tokens

pytestmark = pytest.mark.slow


def _materialise(name):
    module = build_component(name, "official", device="meta").to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        for b_name, b in module.named_buffers():
            if b_name.endswith("running_var"):
                b.fill_(1.0)
            elif b.is_floating_point():
                b.zero_()
    return module


def test_official_networks_chain_together():
    d = PRESET_DIMS["official"]
    with torch.no_grad():
        dino = _materialise("dino")
        tokens = dino(torch.randn(1, 3, 224, 224), torch.randn(1, 512))
        assert tokens.shape == (1, 261, 1024)
        del dino
        appearance = _materialise("image_proj")(tokens)
        assert appearance.shape == (1, d.appearance_tokens, 1024)
        feats = _materialise("expression")(torch.rand(2, 3, 256, 256))
        rot, _ = _materialise("headpose").encode(torch.rand(2, 3, 256, 256))
        refined = _materialise("motion_proj")(feats, 10, 20)
        motion = motion_tokens(refined, rot)
        assert motion.shape == (2, 64, 1024)
        pose = _materialise("pose_guider")(torch.zeros(2, 3, 64, 64))
        assert pose.shape == (2, 320, 8, 8)
        unet = _materialise("unet")
        ctx = torch.cat([appearance.expand(2, -1, -1), motion], dim=1).unsqueeze(0)
        out = unet(torch.randn(1, 2, 8, 8, 8), torch.tensor(0.5), ctx, torch.tensor([[12.5, 0.0, 0.0]]),
                   pose.unsqueeze(0))
    assert out.shape == (1, 2, 4, 8, 8) and torch.isfinite(out).all()
