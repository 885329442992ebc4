"""``lenet5``: LeNet-5 (LeCun et al. 1998) with ReLU and max pooling.

Two 5x5 convolutions (6 and 16 filters, no padding) each followed by 2x2 max pooling, then
FC 120 → 84 → classes. The flatten size follows the input: 16 × 5 × 5 = 400 at 32x32 (the
original network), 16 × 4 × 4 = 256 at 28x28 (MNIST without padding to 32).
"""

from __future__ import annotations

from torch import Tensor, nn

from prunebench.models.base import Accepts, conv_out, register_model


class LeNet5(nn.Module):
    """conv5-pool-conv5-pool → FC 120 → FC 84 → classifier."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        h, w = (conv_out(conv_out(conv_out(conv_out(s, 5), 2, 2), 5), 2, 2) for s in (height, width))
        self.flatten = nn.Flatten()
        self.fc = nn.Sequential(nn.Linear(16 * h * w, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.classifier = nn.Linear(84, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.fc(self.flatten(self.features(x))))


# 16x16 is the smallest image that keeps one position after conv5-pool-conv5-pool.
@register_model("lenet5", accepts=Accepts("image", min_size=16))
def lenet5(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """LeNet-5 for images of any channel count, e.g. (1, 28, 28) or (3, 32, 32)."""
    c, h, w = input_shape
    return LeNet5(c, h, w, num_classes)
