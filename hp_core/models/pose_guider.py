"""Pose guider: a small conv net that turns a pose image into features added after the UNet's conv_in."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PoseGuider(nn.Module):
    """Pose images (N,3,H,W) in [0,1] -> features (N, out_channels, H/8, W/8)."""

    def __init__(self, channels: Sequence[int] = (16, 32, 96, 256), out_channels: int = 320):
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        layers = []
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(cin, cin, 3, padding=1), nn.Conv2d(cin, cout, 3, padding=1, stride=2)]
        self.blocks = nn.ModuleList(layers)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(pose))
        for conv in self.blocks:
            x = F.silu(conv(x))
        return self.conv_out(x)
