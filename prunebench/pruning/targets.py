"""Which tensors are prunable.

By default the weights of Conv and Linear layers are prunable; biases and normalisation
layers never are (pruning BatchNorm scales is a different method: channel pruning). The
output layer (the last ``nn.Linear``, by the models' contract) and the first layer can
be kept dense. The choice is explicit and reported: every run records the tensors it pruned.

``prune_bias=True`` makes the biases of the selected layers prunable too, as in protocols
whose masks cover every parameter of a layer (Greydanus's MNIST-1D lottery tickets mask
weights and biases). Each bias is its own tensor: layer-wise allocation prunes it to the
layer's rate; sparsity is then counted over weights and biases together. Criteria that
score weights through activations (wanda) cannot score a bias.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class Prunable:
    """One prunable weight: ``param_name`` as in ``named_parameters``, ``module_name`` as in ``named_modules``."""

    module_name: str
    param_name: str
    numel: int
    kind: str  # "linear" / "conv"


def output_layer_name(model: nn.Module) -> str | None:
    """Name of the classifier: the last ``nn.Linear`` in module order."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def prunable_weights(model: nn.Module, *, prune_output: bool = True, prune_first: bool = True,
                     prune_bias: bool = False) -> list[Prunable]:
    """The prunable weight tensors of ``model``, in module order (each layer's bias right after
    its weight when ``prune_bias``)."""
    modules = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
    out_name = output_layer_name(model)
    result = []
    for i, (name, module) in enumerate(modules):
        if not prune_first and i == 0:
            continue
        if not prune_output and name == out_name:
            continue
        kind = "linear" if isinstance(module, nn.Linear) else "conv"
        result.append(Prunable(name, f"{name}.weight" if name else "weight", module.weight.numel(), kind))
        if prune_bias and isinstance(getattr(module, "bias", None), nn.Parameter):
            result.append(Prunable(name, f"{name}.bias" if name else "bias", module.bias.numel(), kind))
    return result
