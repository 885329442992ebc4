"""Cost metrics of a (pruned) model: parameters, FLOPs and measured latency.

FLOPs come from ``torch.utils.flop_counter`` (real operator counts, not formulas). For
unstructured masks the effective FLOPs scale each masked layer's count by its density:
that is the *theoretical* saving a sparse kernel could reach. Measured latency is reported
beside it because dense kernels on ordinary hardware do not skip zeros — the gap between
the two is what users need to see.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Mapping

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """All parameters (weights, biases, normalisation), pruned or not."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Parameters that are not exactly zero."""
    return sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())


@torch.no_grad()
def layer_flops(model: nn.Module, example_input: torch.Tensor) -> tuple[float, dict[str, float]]:
    """Per-sample forward FLOPs: (total, {module name: FLOPs of that module incl. children}).

    ``example_input`` is a batch; counts are divided by its size.
    """
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(example_input)
    finally:
        model.train(was_training)
    batch = example_input.shape[0]
    root = type(model).__name__
    per_module: dict[str, float] = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        name = key[len(root) + 1 :] if key.startswith(root + ".") else ("" if key == root else key)
        per_module[name] = sum(ops.values()) / batch
    return counter.get_total_flops() / batch, per_module


def effective_flops(
    model: nn.Module,
    example_input: torch.Tensor,
    densities: Mapping[str, float] | None = None,
) -> tuple[float, float]:
    """(effective FLOPs, dense FLOPs) per sample for this model as it is now.

    ``densities`` maps module names (as in ``named_modules``) to the fraction of their
    weights kept by an unstructured mask; each such module's FLOPs are scaled by it.
    Structured pruning needs no densities: the smaller model simply counts fewer FLOPs.
    """
    total, per_module = layer_flops(model, example_input)
    saved = 0.0
    for name, density in (densities or {}).items():
        saved += per_module.get(name, 0.0) * (1.0 - float(density))
    return total - saved, total


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    warmup: int = 5,
    repeats: int = 30,
) -> float:
    """Median wall time in milliseconds of one forward pass on ``example_input``.

    Runs in eval mode on the model's current device after ``warmup`` untimed passes;
    synchronises CUDA around every timed pass so the time is real, not launch latency.
    """
    was_training = model.training
    model.eval()
    device = example_input.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    try:
        for _ in range(warmup):
            model(example_input)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(example_input)
            sync()
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    return statistics.median(times)


# ---- deployment-mode latency ---------------------------------------------------------------
LATENCY_MODES = ("eager", "deploy")


class _ChannelsLastInput(nn.Module):
    """Feeds ``model`` its 4-D input in channels-last memory format (NHWC, oneDNN's layout)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that directly follows a Conv or
    Linear folded into its weights and bias (``torch.fx.experimental.optimization.fuse``).

    The caller's model is not touched. Raises whatever ``torch.fx`` raises when the model
    cannot be traced symbolically (data-dependent control flow); ``deploy_model`` falls
    back to the unfolded model then.
    """
    from torch.fx.experimental.optimization import fuse

    return fuse(copy.deepcopy(model).eval(), inplace=True)


def deploy_model(model: nn.Module, example_input: torch.Tensor) -> tuple[nn.Module, str]:
    """(a copy of ``model`` prepared the way it would ship on this device, the mode string).

    BatchNorm folded into the preceding layer when the model traces with ``torch.fx``;
    channels-last memory format for 4-D inputs on CPU. The latency functions add
    ``torch.inference_mode`` and, when asked, ``torch.compile``. The mode string lists
    what was applied, e.g. ``deploy:bn_fold+channels_last+inference_mode``.
    """
    parts = []
    try:
        net = fold_batchnorm(model)
        parts.append("bn_fold")
    except Exception:  # untraceable model: ship it unfolded, and say so in the mode
        net = copy.deepcopy(model).eval()
    if example_input.dim() == 4 and example_input.device.type == "cpu":
        net = _ChannelsLastInput(net.to(memory_format=torch.channels_last)).eval()
        parts.append("channels_last")
    parts.append("inference_mode")
    return net, "deploy:" + "+".join(parts)


def _try_compile(models: dict[str, nn.Module], x: torch.Tensor) -> dict[str, nn.Module] | None:
    """``torch.compile``d copies that ran once on ``x``, or None where compiling fails."""
    compile_fn = getattr(torch, "compile", None)
    if compile_fn is None:
        return None
    try:
        out = {k: compile_fn(m) for k, m in models.items()}
        with torch.inference_mode():
            for m in out.values():
                m(x)
        return out
    except Exception:  # no compiler toolchain, unsupported op, ...: stay uncompiled
        return None


class _OrtModule(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` call interface (CPU tensors)."""

    def __init__(self, session: object) -> None:
        super().__init__()
        self.session = session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"x": x.detach().cpu().numpy()})[0])  # type: ignore[attr-defined]


def _try_onnxruntime(models: dict[str, nn.Module], x: torch.Tensor) -> dict[str, nn.Module] | None:
    """ONNX Runtime sessions (CPU, torch's thread count) of ``models``, or None where
    onnxruntime is not installed, the device is not a CPU, or export fails."""
    if x.device.type != "cpu":
        return None
    try:
        import io
        import warnings

        import onnxruntime as ort

        out = {}
        for k, m in models.items():
            buf = io.BytesIO()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(m, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                                  dynamic_axes={"x": {0: "batch"}})
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = torch.get_num_threads(), 1
            out[k] = _OrtModule(ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"]))
            out[k](x)
        return out
    except Exception:  # no onnxruntime, an op without an ONNX export, ...: stay in torch
        return None


def interleaved_latency(
    models: Mapping[str, nn.Module],
    example_input: torch.Tensor,
    *,
    rounds: int = 3,
    repeats: int = 10,
    warmup: int = 3,
) -> dict[str, float]:
    """Latency in ms per model, the models timed in turn for ``rounds`` rounds.

    Alternating (dense, pruned, dense, pruned, ...) rather than timing each model in one
    block means a burst of load on a shared machine hits all of them alike. Each round
    gives a median (``measure_latency``); a model's latency is the best of its rounds, as
    ``timeit`` advises: other processes only ever add time.
    """
    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():  # warm-up first, so no model pays first-call costs
        measure_latency(m, example_input, warmup=warmup, repeats=1)
    for _ in range(rounds):
        for k, m in models.items():
            times[k].append(measure_latency(m, example_input, warmup=1, repeats=repeats))
    return {k: min(v) for k, v in times.items()}


def latency_in_mode(
    models: Mapping[str, nn.Module],
    example_input: torch.Tensor,
    mode: str = "eager",
    *,
    compile: bool = False,
    onnxruntime: bool = False,
    rounds: int = 3,
    repeats: int = 10,
    warmup: int = 3,
) -> tuple[dict[str, float], str]:
    """({name: latency ms}, mode string) with every model measured in the same ``mode``.

    ``eager`` times the models as they are; ``deploy`` times copies prepared by
    ``deploy_model`` (BatchNorm folded, channels-last, inference mode). With
    ``compile=True``, ``torch.compile``d copies are tried too, and with ``onnxruntime=True``
    ONNX Runtime sessions of the prepared models (CPU); the fastest of these on all the
    models together is kept (``+compile`` or ``+onnxruntime`` joins the mode string), so
    every model is always measured in the same mode. Both take seconds to minutes to
    prepare, so they are off by default. The caller's models are unchanged.
    """
    if mode not in LATENCY_MODES:
        from prunebench.errors import unknown_name

        raise unknown_name("metrics.latency_mode", mode, LATENCY_MODES)
    if mode == "eager":
        return interleaved_latency(models, example_input, rounds=rounds, repeats=repeats, warmup=warmup), "eager"
    prepared, modes = {}, set()
    for k, m in models.items():
        prepared[k], mode_str = deploy_model(m, example_input)
        modes.add(mode_str)
    mode_str = "|".join(sorted(modes))  # one string when every model prepared alike
    times = interleaved_latency(prepared, example_input, rounds=rounds, repeats=repeats, warmup=warmup)
    base = mode_str
    for wanted, name, make in ((compile, "compile", _try_compile), (onnxruntime, "onnxruntime", _try_onnxruntime)):
        other = make(prepared, example_input) if wanted else None
        if other is not None:
            t = interleaved_latency(other, example_input, rounds=rounds, repeats=repeats, warmup=warmup)
            if sum(t.values()) < sum(times.values()):
                times, mode_str = t, f"{base}+{name}"
    return times, mode_str
