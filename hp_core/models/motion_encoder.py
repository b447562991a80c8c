"""The pretrained motion encoders: expression (ResNet-50, GroupNorm) and head pose (ResNet-18, GroupNorm).

Key names follow the official checkpoints (``resnet50.*`` and ``head_pose_net.*``). The two networks use
different normalisation: the expression ResNet-50 has one group per GroupNorm (a LayerNorm over C,H,W),
the head-pose ResNet-18 has 32 groups.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


class _Bottleneck(nn.Module):
    """ResNet bottleneck (stride on the 3x3 conv), GroupNorm instead of BatchNorm."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, groups: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1, self.gn1 = _conv(cin, planes, 1), nn.GroupNorm(groups, planes)
        self.conv2, self.gn2 = _conv(planes, planes, 3, stride), nn.GroupNorm(groups, planes)
        self.conv3, self.gn3 = _conv(planes, cout, 1), nn.GroupNorm(groups, cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(_conv(cin, cout, 1, stride), nn.GroupNorm(groups, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.gn1(self.conv1(x)))
        y = F.relu(self.gn2(self.conv2(y)))
        y = self.gn3(self.conv3(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class _BasicBlock(nn.Module):
    """ResNet basic block with GroupNorm; the official names keep the ``bn``/``shortcut`` spelling."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, groups: int):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, planes, 3, stride), nn.GroupNorm(groups, planes)
        self.conv2, self.bn2 = _conv(planes, planes, 3), nn.GroupNorm(groups, planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(_conv(cin, planes, 1, stride), nn.GroupNorm(groups, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class _ResNetGN(nn.Module):
    """Stem + four stages + average pool + linear head, parameterised for the full and tiny presets."""

    def __init__(self, block, depths: Sequence[int], widths: Sequence[int], groups: int, out_dim: int,
                 stem_norm_name: str):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        setattr(self, stem_norm_name, nn.GroupNorm(groups, widths[0]))
        self._stem_norm = stem_norm_name
        cin = widths[0]
        for i, (depth, planes) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1, groups))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(getattr(self, self._stem_norm)(self.conv1(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(x.mean(dim=(2, 3)))


class ExpressionEncoder(nn.Module):
    """Face crop (B,3,256,256) in [0,1] -> implicit expression feature (B, out_dim)."""

    def __init__(self, widths=(64, 128, 256, 512), depths=(3, 4, 6, 3), out_dim: int = 512):
        super().__init__()
        self.resnet50 = _ResNetGN(_Bottleneck, depths, widths, 1, out_dim, "gn1")

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.resnet50(crops)


class HeadPoseEncoder(nn.Module):
    """Head-pose image (B,3,H,W) -> rotation in degrees (B,3) and translation (B,3).

    The release feeds ``pose_image * 2 + 1`` (values in [1, 3]); :meth:`encode` applies that so callers
    pass the [0,1] image.
    """

    def __init__(self, widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), groups: int = 32):
        super().__init__()
        self.head_pose_net = _ResNetGN(_BasicBlock, depths, widths, groups, 6, "bn1")

    @staticmethod
    def map_outputs(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The release's output mapping: sigmoid to +-180 degrees and +-2 units."""
        rotation = torch.sigmoid(raw[:, :3]) * 360.0 - 180.0
        translation = torch.sigmoid(raw[:, 3:]) * 4.0 - 2.0
        return rotation, translation

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.map_outputs(self.head_pose_net(x))

    def encode(self, pose_images_01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose images in [0,1] -> (rotation, translation), with the release's input shift."""
        return self(pose_images_01 * 2.0 + 1.0)
