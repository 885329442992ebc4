"""``cnn1d``: the small 1-D CNN of the MNIST-1D paper (Greydanus 2020).

As in the paper's ``ConvBase``: three Conv1d layers with stride 2 and padding 1 (kernel 5,
then 3 and 3), ReLU after each, flatten, one Linear to the classes. On 40-sample inputs
this is 40 → 19 → 10 → 5 positions, so the classifier sees 25 × 5 = 125 features.
"""

from __future__ import annotations

from torch import Tensor, nn

from prunebench.models.base import Accepts, check_positive_int, conv_out, register_model

_KERNELS = (5, 3, 3)


class CNN1d(nn.Module):
    """Conv1d stack (stride 2, padding 1) with ReLU, then a Linear classifier."""

    def __init__(self, in_channels: int, length: int, channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for k in _KERNELS:
            layers += [nn.Conv1d(c, channels, k, stride=2, padding=1), nn.ReLU()]
            c = channels
            length = conv_out(length, k, stride=2, padding=1)
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels * length, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # (B, L) vectors get their single channel here
            x = x.unsqueeze(1)
        return self.classifier(self.flatten(self.features(x)))


# L >= 3 leaves one position after the first (kernel 5, padding 1) layer; the kernel-3
# layers keep at least one position from there on.
@register_model("cnn1d", accepts=Accepts("sequence", min_size=3))
def cnn1d(input_shape: tuple[int, ...], num_classes: int, *, channels: int = 25) -> nn.Module:
    """MNIST-1D CNN on ``(L,)`` or ``(C, L)`` inputs with ``channels`` filters per layer."""
    in_channels = input_shape[0] if len(input_shape) == 2 else 1
    return CNN1d(in_channels, input_shape[-1], check_positive_int("channels", channels), num_classes)
