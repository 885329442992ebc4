"""Does channel pruning make models really faster? Measured CPU latency vs FLOPs speedup.

For vgg11_bn and resnet56 (CIFAR shape, 3x32x32, 10 classes) at channel ratios
0.25 / 0.5 / 0.75 (uniform per layer, L1 filter norm), prints parameters, the FLOPs
speedup, the measured latency speedup at batch 1 and batch 64 against the dense model
measured in the same process, and measured / FLOPs speedup at batch 64.

A control row per model: an unstructured (masked, global magnitude) model with as many
nonzero parameters as the channel-pruned model at ratio 0.5 — fewer "effective" FLOPs
on paper, but dense kernels do not skip zeros, so no latency gain.

Target (issue "Structured pruning"): at batch 64 and ratio 0.5 the measured speedup is
at least 0.7 x the FLOPs speedup. CPU timings on a shared machine are noisy; latencies
are medians of ``--repeats`` passes after warm-up, with the thread count fixed.

    python benchmarks/structured_speedup.py            # full run
    python benchmarks/structured_speedup.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import copy
import os

import torch
from torch import nn

from prunebench.metrics import count_nonzero, count_params, effective_flops, layer_flops, measure_latency
from prunebench.models import build_model
from prunebench.pruning.allocation import allocate
from prunebench.pruning.criteria import ScoreContext, get_criterion
from prunebench.pruning.mask import Mask
from prunebench.pruning.structured import prune_channels
from prunebench.pruning.targets import prunable_weights

# (column, format spec for its values); each column is as wide as its name (at least 9)
COLUMNS = [
    ("model", "s"),
    ("ratio", "s"),
    ("params", ",d"),
    ("params_ratio", ".3f"),
    ("flops_speedup", ".2f"),
    ("latency_b1_ms", ".2f"),
    ("speedup_b1", ".2f"),
    ("latency_b64_ms", ".1f"),
    ("speedup_b64", ".2f"),
    ("meas/flops_b64", ".2f"),
]


def _align(name: str) -> str:
    return ("<" if name == "model" else ">") + str(max(len(name), 9))


def latencies(model: nn.Module, big_batch: int, warmup: int, repeats: int) -> tuple[float, float]:
    """Median ms at batch 1 and at ``big_batch`` (CIFAR-shaped random input)."""
    x1 = torch.randn(1, 3, 32, 32)
    xb = torch.randn(big_batch, 3, 32, 32)
    return (
        measure_latency(model, x1, warmup=warmup, repeats=repeats * 3),  # batch 1 is short: more passes
        measure_latency(model, xb, warmup=warmup, repeats=repeats),
    )


def unstructured_like(dense: nn.Module, params_target: int) -> tuple[nn.Module, dict[str, float]]:
    """Magnitude-masked copy of ``dense`` with about ``params_target`` nonzero parameters."""
    net = copy.deepcopy(dense)
    targets = prunable_weights(net)
    prunable = sum(t.numel for t in targets)
    sparsity = min((count_params(net) - params_target) / prunable, 0.999)
    mask = Mask.ones_like(net, [t.param_name for t in targets])
    scores = get_criterion("magnitude").fn(net, targets, ScoreContext(mask))
    mask = allocate(scores, mask, sparsity, "global")
    mask.apply(net)
    densities = {t.module_name: 1.0 - mask.layer_sparsity()[t.param_name] for t in targets}
    return net, densities


def row(**values: object) -> str:
    return " ".join(format(format(values[name], spec), _align(name)) for name, spec in COLUMNS)


def header() -> str:
    return " ".join(format(name, _align(name)) for name, _ in COLUMNS)


def run_model(name: str, ratios: list[float], big_batch: int, warmup: int, repeats: int) -> tuple[list[str], list[str]]:
    """Table rows and target verdicts for one model."""
    torch.manual_seed(0)
    dense = build_model(name, (3, 32, 32), 10).eval()
    x = torch.randn(2, 3, 32, 32)
    dense_params = count_params(dense)
    dense_flops, _ = layer_flops(dense, x)
    d1, db = latencies(dense, big_batch, warmup, repeats)
    lines = [row(model=name, ratio="dense", params=dense_params, params_ratio=1.0, flops_speedup=1.0,
                 latency_b1_ms=d1, speedup_b1=1.0, latency_b64_ms=db, speedup_b64=1.0, **{"meas/flops_b64": 1.0})]
    verdicts = []
    half_params = None
    for ratio in ratios:
        model = copy.deepcopy(dense)
        result = prune_channels(model, x, amount=ratio, criterion="l1", scope="layer")
        p1, pb = latencies(model, big_batch, warmup, repeats)
        fs = result.speedup_theoretical
        lines.append(row(model=name, ratio=f"{ratio:g}", params=result.params_after,
                         params_ratio=result.params_after / dense_params, flops_speedup=fs,
                         latency_b1_ms=p1, speedup_b1=d1 / p1, latency_b64_ms=pb, speedup_b64=db / pb,
                         **{"meas/flops_b64": (db / pb) / fs}))
        if ratio == 0.5:
            half_params = result.params_after
            ok = db / pb >= 0.7 * fs
            verdicts.append(f"{name}: ratio 0.5, batch {big_batch}: measured {db / pb:.2f}x vs 0.7 x FLOPs "
                            f"{0.7 * fs:.2f}x -> {'PASS' if ok else 'FAIL'}")
    if half_params is not None:
        masked, densities = unstructured_like(dense, half_params)
        eff, _ = effective_flops(masked, x, densities)
        u1, ub = latencies(masked, big_batch, warmup, repeats)
        fs = dense_flops / eff
        lines.append(row(model=name, ratio="unstr@0.5", params=count_nonzero(masked),
                         params_ratio=count_nonzero(masked) / dense_params, flops_speedup=fs,
                         latency_b1_ms=u1, speedup_b1=d1 / u1, latency_b64_ms=ub, speedup_b64=db / ub,
                         **{"meas/flops_b64": (db / ub) / fs}))
    return lines, verdicts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["vgg11_bn", "resnet56"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.25, 0.5, 0.75])
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--batch", type=int, default=64, help="the large batch")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 5, 2

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU, torch.set_num_threads({args.threads}) -> "
          f"{torch.get_num_threads()} threads; medians of {args.repeats} passes (x3 at batch 1); "
          f"params_ratio = params / dense params (nonzero for the unstructured row)")
    print(header())
    verdicts = []
    for name in args.models:
        lines, model_verdicts = run_model(name, args.ratios, args.batch, args.warmup, args.repeats)
        print("\n".join(lines), flush=True)
        verdicts += model_verdicts
    print("target: measured speedup >= 0.7 x FLOPs speedup at batch", args.batch, "and ratio 0.5")
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
