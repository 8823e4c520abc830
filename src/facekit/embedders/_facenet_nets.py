"""Inception-ResNet-v1 (Szegedy et al. 2017) as FaceNet uses it: 160×160 crops → 512-d.

Module names follow facenet-pytorch's released state dicts (``conv2d_1a``, ``repeat_1``,
``mixed_6a``, ..., ``last_linear``, ``last_bn``), so those files load as they are; their
classification layer (``logits``) is not part of the embedder.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["InceptionResnetV1"]


class _Conv(nn.Module):
    """Conv (no bias) → BN (eps 0.001) → ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001, momentum=0.1)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.relu(self.bn(self.conv(x)))
        return out


class _Block35(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = _Conv(256, 32, 1)
        self.branch1 = nn.Sequential(_Conv(256, 32, 1), _Conv(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(
            _Conv(256, 32, 1), _Conv(32, 32, 3, padding=1), _Conv(32, 32, 3, padding=1)
        )
        self.conv2d = nn.Conv2d(96, 256, 1)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        mixed = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)
        out: Tensor = self.relu(self.conv2d(mixed) * self.scale + x)
        return out


class _Block17(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = _Conv(896, 128, 1)
        self.branch1 = nn.Sequential(
            _Conv(896, 128, 1),
            _Conv(128, 128, (1, 7), padding=(0, 3)),
            _Conv(128, 128, (7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(256, 896, 1)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        mixed = torch.cat([self.branch0(x), self.branch1(x)], 1)
        out: Tensor = self.relu(self.conv2d(mixed) * self.scale + x)
        return out


class _Block8(nn.Module):
    def __init__(self, scale: float, relu: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = _Conv(1792, 192, 1)
        self.branch1 = nn.Sequential(
            _Conv(1792, 192, 1),
            _Conv(192, 192, (1, 3), padding=(0, 1)),
            _Conv(192, 192, (3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(384, 1792, 1)
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        mixed = torch.cat([self.branch0(x), self.branch1(x)], 1)
        out: Tensor = self.relu(self.conv2d(mixed) * self.scale + x)
        return out


class _Mixed6a(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _Conv(256, 384, 3, stride=2)
        self.branch1 = nn.Sequential(
            _Conv(256, 192, 1), _Conv(192, 192, 3, padding=1), _Conv(192, 256, 3, stride=2)
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class _Mixed7a(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(_Conv(896, 256, 1), _Conv(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(_Conv(896, 256, 1), _Conv(256, 256, 3, stride=2))
        self.branch2 = nn.Sequential(
            _Conv(896, 256, 1), _Conv(256, 256, 3, padding=1), _Conv(256, 256, 3, stride=2)
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class InceptionResnetV1(nn.Module):
    """``(N, 3, 160, 160)`` standardised crops → ``(N, 512)`` features, not normalised."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2d_1a = _Conv(3, 32, 3, stride=2)
        self.conv2d_2a = _Conv(32, 32, 3)
        self.conv2d_2b = _Conv(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = _Conv(64, 80, 1)
        self.conv2d_4a = _Conv(80, 192, 3)
        self.conv2d_4b = _Conv(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*(_Block35(0.17) for _ in range(5)))
        self.mixed_6a = _Mixed6a()
        self.repeat_2 = nn.Sequential(*(_Block17(0.10) for _ in range(10)))
        self.mixed_7a = _Mixed7a()
        self.repeat_3 = nn.Sequential(*(_Block8(0.20) for _ in range(5)))
        self.block8 = _Block8(1.0, relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.6)
        self.last_linear = nn.Linear(1792, 512, bias=False)
        self.last_bn = nn.BatchNorm1d(512, eps=0.001, momentum=0.1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv2d_4b(
            self.conv2d_4a(
                self.conv2d_3b(self.maxpool_3a(self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))))
            )
        )
        x = self.mixed_7a(self.repeat_2(self.mixed_6a(self.repeat_1(x))))
        x = self.block8(self.repeat_3(x))
        x = self.dropout(self.avgpool_1a(x)).flatten(1)
        out: Tensor = self.last_bn(self.last_linear(x))
        return out
