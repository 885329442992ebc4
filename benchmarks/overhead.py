"""Overhead of prunebench's retraining loop versus a plain PyTorch loop.

Every side trains the same pruned model (same initial weights, same mask, same data
loader, same number of epochs, validation after every epoch, pruned weights re-zeroed
after every step), interleaved over several repeats; the script prints the median
milliseconds per optimizer step of each side and three ratios:

- ``pb/plain_f``: prunebench (defaults) vs the plain loop with the same Adam kernel
  (``fused=True``, which prunebench picks by default): the framework's own overhead.
- ``pbu/plain``: both with PyTorch's default (for-loop) Adam. prunebench also masks the
  gradients (so Adam's moments stay zero on pruned weights); on some x86 CPUs the for-loop
  Adam's ``sqrt`` over those exact zeros takes a slow path, which this column shows.
- ``pb/plain``: what a user sees: prunebench's defaults vs the hand-written default loop.

``pb_1step`` shows what grouping 8 optimizer steps per Lightning batch
(``trainer.steps_per_call``) saves. ``pb_progress`` is prunebench's defaults with the live
progress panel on (``prunebench.progress.Progress`` on a terminal console, redrawn twice
a second into a buffer); ``prog/pb`` is its cost (target: <= 1.02, issue 15).

Targets (issue "Core pipeline"): overhead ratio <= 1.3 on the MNIST-1D MLP, <= 1.1 on
LeNet-300-100 with MNIST-shaped data (real MNIST when found, otherwise synthetic data of
the same shape and size).

    python benchmarks/overhead.py            # both cases
    python benchmarks/overhead.py --quick    # fewer epochs and repeats
    python benchmarks/overhead.py --only mlp # the quickstart's case only
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

from prunebench.data import build_datamodule
from prunebench.engine.fit import fit
from prunebench.engine.module import Classifier
from prunebench.models import build_model
from prunebench.pruning.scopes import allocate
from prunebench.pruning.criteria import ScoreContext, get_criterion
from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import prunable_weights
from prunebench.spec import TrainerSpec

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pruned(net: nn.Module, sparsity: float) -> Mask:
    targets = prunable_weights(net)
    mask = Mask.ones_like(net, [t.param_name for t in targets])
    scores = get_criterion("magnitude").fn(net, targets, ScoreContext(mask))
    mask = allocate(scores, mask, sparsity, "layer")
    mask.apply(net)
    return mask


def plain_loop(net: nn.Module, mask: Mask, dm, epochs: int, lr: float, fused: bool = False) -> float:
    """The loop a researcher writes by hand: train, re-zero pruned weights, validate."""
    params = dict(net.named_parameters())
    masked = [(params[n], m.to(params[n].dtype)) for n, m in mask.items()]
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=fused or None)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for x, y in dm.train_dataloader():
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for p, m in masked:
                    p.mul_(m)
        net.eval()
        correct = 0
        with torch.inference_mode():
            for x, y in dm.val_dataloader():
                correct += int((net(x).argmax(1) == y).sum())
    return time.perf_counter() - start


def prunebench_loop(net: nn.Module, mask: Mask, dm, epochs: int, lr: float, fused: bool = True,
                    steps_per_call: int = 8, progress: bool = False) -> float:
    live = None
    if progress:  # the live panel, drawn by rich's refresh thread into a buffer (a terminal)
        import io

        from rich.console import Console

        from prunebench.progress import Progress

        live = Progress(total_runs=1, console=Console(file=io.StringIO(), force_terminal=True, width=120))
        live.start_run(1, "bench", levels=1)
        live.start_level(1)
    start = time.perf_counter()
    module = Classifier(net, partial(torch.optim.Adam, lr=lr), mask=mask)
    fit(module, dm, TrainerSpec(accelerator="cpu", fused_optimizer=fused, steps_per_call=steps_per_call),
        epochs=epochs, progress=live)
    seconds = time.perf_counter() - start
    if live is not None:
        live.close()
    return seconds


#: side -> (loop, kwargs); every side trains the same model from the same weights and mask
SIDES = {
    "plain": (plain_loop, {}),                                   # torch.optim.Adam as is (for-loop kernel)
    "plain_fused": (plain_loop, {"fused": True}),                # the same loop with Adam(fused=True)
    "pb": (prunebench_loop, {}),                                 # prunebench defaults (fused, 8 steps per call)
    "pb_unfused": (prunebench_loop, {"fused": False}),           # prunebench with the for-loop Adam
    "pb_1step": (prunebench_loop, {"steps_per_call": 1}),        # one Lightning batch per optimizer step
    "pb_progress": (prunebench_loop, {"progress": True}),        # prunebench defaults + live progress panel
}


def case(name: str, dm, model: str, epochs: int, repeats: int) -> dict[str, float]:
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    base = build_model(model, tuple(dm.input_shape), dm.num_classes)
    mask = pruned(base, 0.8)
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    for _ in range(repeats):  # interleave the sides so drift in machine speed hits all alike
        for side, (loop, kw) in SIDES.items():
            times[side].append(loop(copy.deepcopy(base), mask, dm, epochs, 1e-3, **kw))
    med = {side: statistics.median(t) for side, t in times.items()}
    steps = epochs * len(dm.train_dataloader())
    # The headline ratio compares like with like: the same Adam kernel on both sides.
    ratio = med["pb"] / med["plain_fused"]
    print(f"{name:<40} {steps:>6} " + " ".join(f"{1e3 * med[s] / steps:>11.3f}" for s in SIDES)
          + f" {ratio:>9.3f} {med['pb_unfused'] / med['plain']:>11.3f} {med['pb'] / med['plain']:>10.3f}"
          + f" {med['pb_progress'] / med['pb']:>8.3f}")
    return med | {"ratio": ratio, "pb_step_ms": 1e3 * med["pb"] / steps}


def progress_cost(step_ms: float) -> None:
    """The live panel's cost measured directly (wall-clock ratios on a busy machine are noisy).

    Per step: ``Progress.on_step`` (counters + a clock read) plus one redraw every
    ``1 / refresh_per_second`` seconds, as a fraction of a ``step_ms`` optimizer step.
    """
    import io

    from rich.console import Console

    from prunebench.progress import Progress

    p = Progress(total_runs=3, console=Console(file=io.StringIO(), force_terminal=True, width=120))
    p.start_run(1, "bench", levels=5)
    p.start_level(1, epochs=10, steps_per_epoch=100)
    p.start_fit()
    n = 200_000
    p._next_draw = float("inf")  # counters only
    start = time.perf_counter()
    for _ in range(n):
        p.on_step()
    step_ns = (time.perf_counter() - start) / n * 1e9
    draws = 50
    start = time.perf_counter()
    for _ in range(draws):
        p.refresh()
    draw_ms = (time.perf_counter() - start) / draws * 1e3
    p.close()
    share = (step_ns * 1e-6 + draw_ms * p._draw_every ** -1 * step_ms * 1e-3) / step_ms
    print(f"progress panel: on_step {step_ns:.0f} ns, redraw {draw_ms:.2f} ms every {p._draw_every:.1f} s "
          f"-> {100 * share:.2f}% of a {step_ms:.3f} ms step (target <= 2%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer epochs and repeats")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier timings)")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--only", choices=("mlp", "lenet"), help="run one case only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 5
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {repeats} (median shown)")
    print("ms per optimizer step (median over repeats; validation every epoch included); ratios of wall times")
    print(f"{'case':<40} {'steps':>6} " + " ".join(f"{s:>11}" for s in SIDES)
          + f" {'pb/plain_f':>9} {'pbu/plain':>11} {'pb/plain':>10} {'prog/pb':>8}")
    if args.only != "lenet":
        med = case("mlp / mnist1d (target <= 1.3)", build_datamodule("mnist1d", root=args.data_root),
                   "mlp", 5 if args.quick else 20, repeats)
        progress_cost(med["pb_step_ms"])
    if args.only == "mlp":
        return
    mnist = SHARED_DATA if (SHARED_DATA / "MNIST" / "raw").exists() else None
    if mnist is not None:
        dm = build_datamodule("mnist", root=str(mnist), batch_size=60)
        label = "lenet_300_100 / mnist (target <= 1.1)"
    else:
        dm = build_datamodule("synthetic", input_shape=[1, 28, 28], num_classes=10, n_train=60000,
                              n_test=10000, batch_size=60)
        label = "lenet_300_100 / synthetic 1x28x28 (<= 1.1)"
    case(label, dm, "lenet_300_100", 1 if args.quick else 2, repeats)


if __name__ == "__main__":
    main()
