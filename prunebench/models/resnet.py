"""``resnet20``, ``resnet56``: the CIFAR ResNets of He et al. (2016), section 4.2.

A 3x3 conv with 16 filters, three stages of ``n`` basic blocks with 16, 32 and 64 filters
(the first block of stages 2 and 3 has stride 2), global average pooling and a Linear
classifier: 6n + 2 layers. Where a block changes shape its shortcut is a 1x1 conv + BN
(the paper's option B) rather than zero padding (option A), so a dependency-graph channel
pruner can follow the residual addition. That adds 2,752 parameters to option A's counts
(269,722 and 853,018 for resnet20 and resnet56 with 10 classes).
"""

from __future__ import annotations

from torch import Tensor, nn

from prunebench.models.base import Accepts, check_width_mult, register_model, scaled


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv, three stages of ``blocks_per_stage`` basic blocks, pooling, classifier."""

    def __init__(self, in_channels: int, blocks_per_stage: int, num_classes: int, width_mult: float) -> None:
        super().__init__()
        widths = [scaled(c, width_mult) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        stages: list[nn.Module] = []
        c = widths[0]
        for i, w in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(BasicBlock(c, w, 2 if i > 0 and j == 0 else 1))
                c = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He init, as in the paper.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.classifier(self.flatten(self.pool(x)))


@register_model("resnet20", accepts=Accepts("image", min_size=8))
def resnet20(input_shape: tuple[int, ...], num_classes: int, *, width_mult: float = 1.0) -> nn.Module:
    """ResNet-20 (n=3) for CIFAR-sized images."""
    return CifarResNet(input_shape[0], 3, num_classes, check_width_mult(width_mult))


@register_model("resnet56", accepts=Accepts("image", min_size=8))
def resnet56(input_shape: tuple[int, ...], num_classes: int, *, width_mult: float = 1.0) -> nn.Module:
    """ResNet-56 (n=9) for CIFAR-sized images."""
    return CifarResNet(input_shape[0], 9, num_classes, check_width_mult(width_mult))
