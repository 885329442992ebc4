"""``conv2``, ``conv4``, ``conv6``: the CIFAR-10 convnets of the lottery-ticket paper.

Frankle & Carbin (2019), figure 2: pairs of 3x3 convolutions (padding 1) with 64, 128 and
256 filters, ReLU after each and 2x2 max pooling after each pair, then FC 256 → 256 →
classes. The flatten size is computed from the input, so any image with at least 2**pairs
pixels per side works; on 3x32x32 inputs with 10 classes they have 4,301,642, 2,425,930
and 2,262,602 parameters (most of them in the first FC layer).
"""

from __future__ import annotations

from torch import Tensor, nn

from prunebench.models.base import Accepts, check_width_mult, register_model, scaled

_PAIR_CHANNELS = (64, 128, 256)


class ConvNet(nn.Module):
    """``pairs`` conv-conv-pool blocks, then FC 256 → 256 → classifier."""

    def __init__(self, input_shape: tuple[int, ...], pairs: int, num_classes: int, width_mult: float) -> None:
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for channels in _PAIR_CHANNELS[:pairs]:
            out = scaled(channels, width_mult)
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.Conv2d(out, out, 3, padding=1), nn.ReLU()]
            layers.append(nn.MaxPool2d(2))
            c, h, w = out, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        fc = scaled(256, width_mult)
        self.fc = nn.Sequential(nn.Linear(c * h * w, fc), nn.ReLU(), nn.Linear(fc, fc), nn.ReLU())
        self.classifier = nn.Linear(fc, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.fc(self.flatten(self.features(x))))


@register_model("conv2", accepts=Accepts("image", min_size=2))
def conv2(input_shape: tuple[int, ...], num_classes: int, *, width_mult: float = 1.0) -> nn.Module:
    """Conv-2: conv 64, 64, pool; FC 256, 256, classes."""
    return ConvNet(input_shape, 1, num_classes, check_width_mult(width_mult))


@register_model("conv4", accepts=Accepts("image", min_size=4))
def conv4(input_shape: tuple[int, ...], num_classes: int, *, width_mult: float = 1.0) -> nn.Module:
    """Conv-4: conv 64, 64, pool, 128, 128, pool; FC 256, 256, classes."""
    return ConvNet(input_shape, 2, num_classes, check_width_mult(width_mult))


@register_model("conv6", accepts=Accepts("image", min_size=8))
def conv6(input_shape: tuple[int, ...], num_classes: int, *, width_mult: float = 1.0) -> nn.Module:
    """Conv-6: conv 64, 64, pool, 128, 128, pool, 256, 256, pool; FC 256, 256, classes."""
    return ConvNet(input_shape, 3, num_classes, check_width_mult(width_mult))
