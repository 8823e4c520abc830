"""The IR (improved ResNet) backbones of the AdaFace paper's code, for 112×112 crops.

Module names follow the official checkpoints (``input_layer``, ``body.N.shortcut_layer`` /
``res_layer``, ``output_layer``), so their state dicts load once the ``model.`` prefix is
stripped.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ARCHITECTURES", "IResNet", "architecture_of_units"]

ARCHITECTURES: dict[str, tuple[int, int, int, int]] = {
    "ir_18": (2, 2, 2, 2),
    "ir_34": (3, 4, 6, 3),
    "ir_50": (3, 4, 14, 3),
    "ir_101": (3, 13, 30, 3),
}
"""Architecture name → residual units in each of the four stages (64, 128, 256, 512 channels)."""

_CHANNELS = (64, 128, 256, 512)


def architecture_of_units(units: int) -> str | None:
    """The architecture with ``units`` residual units in all, if any."""
    for name, stages in ARCHITECTURES.items():
        if sum(stages) == units:
            return name
    return None


class _BasicBlockIR(nn.Module):
    """BN → conv3×3 → BN → PReLU → conv3×3 (stride) → BN, plus a shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        self.shortcut_layer: nn.Module
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.BatchNorm2d(depth),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.shortcut_layer(x) + self.res_layer(x)
        return out


class IResNet(nn.Module):
    """IR-18/34/50/101 for ``(N, 3, 112, 112)`` input → ``(N, 512)`` features, not
    normalised (their norm is AdaFace's quality measure)."""

    def __init__(self, architecture: str) -> None:
        super().__init__()
        stages = ARCHITECTURES[architecture]
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        units: list[nn.Module] = []
        in_channels = 64
        for depth, count in zip(_CHANNELS, stages, strict=True):
            units.append(_BasicBlockIR(in_channels, depth, 2))
            units.extend(_BasicBlockIR(depth, depth, 1) for _ in range(count - 1))
            in_channels = depth
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 512),
            nn.BatchNorm1d(512, affine=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.output_layer(self.body(self.input_layer(x)))
        return out
