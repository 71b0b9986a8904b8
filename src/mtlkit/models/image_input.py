"""Image input: a LeNet-style convolutional trunk (the MultiMNIST trunk of Sener & Koltun).

conv k₁ → max-pool 2 → ReLU → conv k₂ → max-pool 2 → ReLU → flatten → linear → ReLU.
Reads ``features["image"]`` (uint8 or float ``[B, C, H, W]``); uint8 pixels are scaled to
[0, 1] and standardised with the training-split mean/std from ``InputSpec.extra``.
"""

from __future__ import annotations

import torch
from torch import nn

from mtlkit.data.prepare import InputSpec
from mtlkit.models import register_input


class ImageInput(nn.Module):
    """LeNet-style trunk; ``output_dim`` = ``hidden``."""

    def __init__(
        self, channels: int, height: int, width: int, conv_channels: tuple[int, int] = (10, 20),
        kernel_sizes: tuple[int, int] = (9, 5), hidden: int = 50, mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__()
        c1, c2 = conv_channels
        k1, k2 = kernel_sizes
        self.conv = nn.Sequential(
            nn.Conv2d(channels, c1, k1), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(c1, c2, k2), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
        )
        h = ((height - k1 + 1) // 2 - k2 + 1) // 2
        w = ((width - k1 + 1) // 2 - k2 + 1) // 2
        if h < 1 or w < 1:
            raise ValueError(f"image input: kernels {kernel_sizes} too large for {height}×{width}")
        self.fc = nn.Sequential(nn.Linear(c2 * h * w, hidden), nn.ReLU())
        # channels-last convolutions are 3-4× faster on CPU (oneDNN) for this trunk
        self.conv.to(memory_format=torch.channels_last)
        self.mean, self.std = float(mean), float(std)
        self.output_dim = hidden

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        x = features["image"]
        if x.dtype == torch.uint8:
            x = x.to(torch.float32) * (1.0 / 255.0)
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return self.fc(self.conv(x))


@register_input("image")
def image_input(
    spec: InputSpec, conv_channels: list[int] = (10, 20), kernel_sizes: list[int] = (9, 5),
    hidden: int = 50,
) -> ImageInput:
    e = spec.extra
    return ImageInput(e["channels"], e["height"], e["width"], tuple(conv_channels),
                      tuple(kernel_sizes), hidden, e.get("mean", 0.0), e.get("std", 1.0))
