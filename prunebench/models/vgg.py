"""``vgg11_bn``, ``vgg16_bn``: VGG (Simonyan & Zisserman 2015) as used on CIFAR-10.

3x3 conv + BatchNorm + ReLU stacks with five 2x2 max poolings, global average pooling and
a single Linear(512, classes), the usual CIFAR adaptation. Pooling uses ceil mode and the
head pools adaptively, so odd sizes (28x28) and small images (8x8) keep at least one
position through all five stages.
"""

from __future__ import annotations

from torch import Tensor, nn

from prunebench.models.base import Accepts, check_width_mult, register_model, scaled

# Channel counts per conv; "M" is a max pooling (configurations A and D of the paper).
_CFG: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """conv-BN-ReLU features, global average pooling, Linear classifier."""

    def __init__(self, in_channels: int, cfg: list[int | str], num_classes: int, width_mult: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                out = scaled(int(v), width_mult)
                layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
                c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He init, as for every ReLU network trained from scratch on CIFAR.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


@register_model("vgg11_bn", accepts=Accepts("image", min_size=8))
def vgg11_bn(input_shape: tuple[int, ...], num_classes: int, *, width_mult: float = 1.0) -> nn.Module:
    """VGG-11 with BatchNorm (8 convs) for CIFAR-sized images."""
    return VGG(input_shape[0], _CFG["vgg11"], num_classes, check_width_mult(width_mult))


@register_model("vgg16_bn", accepts=Accepts("image", min_size=8))
def vgg16_bn(input_shape: tuple[int, ...], num_classes: int, *, width_mult: float = 1.0) -> nn.Module:
    """VGG-16 with BatchNorm (13 convs) for CIFAR-sized images."""
    return VGG(input_shape[0], _CFG["vgg16"], num_classes, check_width_mult(width_mult))
