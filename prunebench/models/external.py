"""Models from outside the registry: torchvision architectures and a user's own factory.

``model=torchvision model.arch=resnet18`` builds any torchvision classification
architecture with the data set's class count (random weights unless ``model.weights``
names a weight set already in the local torch hub cache: prunebench never downloads).
``model=custom model.target=my_models.py:make_net`` calls any importable factory
(``package.module:fn`` or ``path/to/file.py:fn``) with the other ``model.*`` keys as
keyword arguments, plus ``num_classes`` / ``input_shape`` when it has parameters of those
names. Either way one forward pass on a zero batch checks, before training, that the
model takes the data's inputs and returns ``[batch, num_classes]`` logits.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from prunebench.errors import ConfigError
from prunebench.imports import call_with_accepted, load_callable
from prunebench.models.base import Accepts, register_model

#: torchvision architectures whose training-mode output is a tuple unless told otherwise.
_AUX_LOGITS = {"googlenet", "inception_v3"}


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


def check_io(net: nn.Module, input_shape: Sequence[int], num_classes: int, what: str) -> None:
    """Run ``net`` on a zero batch of 2 inputs; ConfigError naming ``what`` unless it returns
    ``[2, num_classes]`` logits. Eval mode and no_grad: no statistics or RNG state change."""
    shape = tuple(int(s) for s in input_shape)
    was_training = net.training
    param = next(net.parameters(), None)
    x = torch.zeros(2, *shape, device=param.device if param is not None else "cpu")
    net.eval()
    try:
        with torch.no_grad():
            out = net(x)
    except Exception as exc:
        raise ConfigError(f"{what} cannot take the data's inputs: a batch of shape {tuple(x.shape)} "
                          f"(input_shape={shape}) raised {_first_line(exc)}") from exc
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"{what} returns a {type(out).__name__} for a batch of inputs; prunebench needs a logits "
                          f"tensor of shape [batch, num_classes]")
    if tuple(out.shape) != (2, num_classes):
        raise ConfigError(f"{what} returns logits of shape {tuple(out.shape)} for a batch of 2 inputs of shape "
                          f"{shape}; the data has num_classes={num_classes}, so expected (2, {num_classes})")


# ---- torchvision -----------------------------------------------------------------------


def torchvision_archs() -> list[str]:
    """Names of torchvision's classification architectures (``torchvision.models``)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_arch(arch: Any) -> str:
    """``arch`` if torchvision has that classification architecture; ConfigError naming model.arch."""
    archs = torchvision_archs()
    if arch not in archs:
        close = difflib.get_close_matches(str(arch), archs, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"model.arch={arch!r} is not a torchvision classification architecture; {hint}"
                          f"{len(archs)} are available (torchvision.models.list_models(module=torchvision.models)), "
                          f"e.g. {', '.join(archs[:6])}, ...")
    return str(arch)


def weights_file(arch: str, weights: str) -> tuple[Path, Any]:
    """Where torch hub caches ``weights`` of ``arch`` (the file may be absent) and its enum."""
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    try:
        w = enum[weights]
    except KeyError:
        valid = ", ".join(m.name for m in enum) + ", DEFAULT"
        if weights == "DEFAULT":
            w = enum.DEFAULT
        else:
            raise ConfigError(f"model.weights={weights!r} is not a weight set of model.arch={arch!r}; valid: {valid}") from None
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(w.url).path), w


def _load_pretrained(net: nn.Module, arch: str, weights: str, num_classes: int) -> None:
    path, w = weights_file(arch, weights)
    if not path.is_file():
        raise ConfigError(
            f"model.weights={weights!r} of model.arch={arch!r} is not in the local torch hub cache ({path}); "
            f"prunebench never downloads weights: fetch them once with python -c \"import torchvision; "
            f"torchvision.models.get_model('{arch}', weights='{weights}')\", or set model.weights=null")
    from prunebench.checkpoints import load_state_file

    state = load_state_file(path, "model.weights")
    own = net.state_dict()
    n_pre = len(w.meta.get("categories") or [])
    # A new head for a different class count: drop exactly the pretrained tensors whose
    # first dimension is the pretrained class count and whose shape no longer fits.
    head = {k for k, v in state.items() if k in own and v.shape != own[k].shape and n_pre and v.shape[0] == n_pre
            and num_classes != n_pre}
    state = {k: v for k, v in state.items() if k not in head}
    from prunebench.checkpoints import check_state_fits

    check_state_fits(net, state, f"model.weights={weights!r}", allow_missing=head)
    net.load_state_dict(state, strict=False)


@register_model("torchvision", accepts=Accepts("image"))
def torchvision_model(input_shape: Sequence[int], num_classes: int, *, arch: str, weights: str | None = None,
                      **kwargs: Any) -> nn.Module:
    """torchvision's ``arch`` with ``num_classes`` outputs; other keys go to its builder.

    ``weights``: a weight set name (``IMAGENET1K_V1``, ``DEFAULT``) loaded from the local
    torch hub cache only; with another class count the classifier head stays random.
    GoogLeNet / Inception-v3 are built without auxiliary heads (plain logits in training).
    """
    import torchvision

    arch = check_arch(arch)
    if arch in _AUX_LOGITS:
        kwargs.setdefault("aux_logits", False)
        kwargs.setdefault("init_weights", True)
    what = f"model=torchvision model.arch={arch!r}"
    try:
        net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        keys = ", ".join(f"model.{k}" for k in kwargs) or "none"
        raise ConfigError(f"{what} rejected its keyword arguments ({keys}): {_first_line(exc)}") from exc
    except Exception as exc:
        raise ConfigError(f"{what} could not be built: {_first_line(exc)}") from exc
    if weights is not None:
        _load_pretrained(net, arch, str(weights), num_classes)
    channels = tuple(input_shape)[0]
    try:
        check_io(net, input_shape, num_classes, what)
    except ConfigError as exc:
        if channels != 3:
            raise ConfigError(f"{exc} (torchvision architectures take 3-channel images; the data has {channels})") from exc
        raise
    return net


# ---- a user's factory --------------------------------------------------------------------


@register_model("custom", accepts=Accepts("any"))
def custom_model(input_shape: Sequence[int], num_classes: int, *, target: str, **kwargs: Any) -> nn.Module:
    """``target(**kwargs)`` (plus ``num_classes`` / ``input_shape`` where it takes them)."""
    fn = load_callable(target, "model.target")
    what = f"model.target={target!r}"
    call = call_with_accepted(fn, {"num_classes": num_classes, "input_shape": tuple(input_shape)}, kwargs)
    try:
        net = fn(**call)
    except Exception as exc:
        keys = ", ".join(f"{k}={v!r}" for k, v in call.items()) or "no arguments"
        raise ConfigError(f"{what} raised {_first_line(exc)} when called with {keys}") from exc
    if not isinstance(net, nn.Module):
        raise ConfigError(f"{what} returned a {type(net).__name__}, not a torch.nn.Module")
    if next(net.parameters(), None) is None:
        raise ConfigError(f"{what} returned a model without parameters")
    check_io(net, input_shape, num_classes, what)
    return net
