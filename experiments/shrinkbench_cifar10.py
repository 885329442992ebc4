"""ShrinkBench-style CIFAR-10 comparison: global vs layer-wise magnitude vs random pruning.

ResNet-20 and ResNet-56 on real CIFAR-10 (Blalock et al. 2020, "What is the state of
neural network pruning?"): one-shot pruning of a trained model at compression ratios 2,
4, 8, 16, 32 (sparsity 1 - 1/c of the prunable weights), 15 fine-tune epochs, 3 seeds;
90 runs sharing 6 cached dense models. Config: conf/experiment/shrinkbench_cifar10.yaml.
Sized for a GPU (``trainer=gpu`` is the default here).

Data: needs CIFAR-10 under ``<paths.data_dir>/cifar-10-batches-py``. ``--download``
fetches it once (torchvision); offline without the files the script stops before any
training with the data module's message (which folder, and how to fix it), exit code 2.

Expected time (estimates; no GPU was available when this was written):
- GPU (one A100/H100-class card): ~5-6 hours. Assumes ~5 s per ResNet-20 epoch
  (352 steps of batch 128 with the data held on the GPU, launch-bound) and ~2.5x that
  for ResNet-56 (3x the layers / FLOPs): dense 3 seeds x 160 epochs (40 min + 100 min),
  fine-tune 45 runs x 15 epochs per model (56 min + 140 min).
- CPU (this shared 2-core machine), measured with a plain PyTorch loop (ResNet, batch 128,
  Adam, CIFAR-shaped synthetic data 3x32x32, ``torch.set_num_threads(1)``, another job
  running): ResNet-20 3.85 ms per training sample (2 epochs of 1,792 samples, 6.9 s
  each), ResNet-56 11.3 ms (1 epoch of 768 samples). With 2 threads ResNet-20 took
  23.4 ms per sample: OpenMP threads stall on each other when another process holds a
  core, so set ``trainer.threads=1`` on such a machine. Extrapolated linearly to 45,000
  training samples: ~2.9 min per ResNet-20 epoch and ~8.5 min per ResNet-56 epoch.
  Per model 3x160 dense + 45x15 fine-tune = 1,155 epochs: ~56 h (ResNet-20) + ~163 h
  (ResNet-56), ~9 days in all (+ a few % for evaluation). Not a CPU study.

What the figure shows (one panel per model): top-1 test accuracy vs compression ratio
(log2 axis), mean ± std over 3 seeds, dense accuracy dashed. Expected as in ShrinkBench:
global magnitude >= layer-wise magnitude, the gap growing with compression; both well
above random pruning beyond ~4x; ResNet-56 holds dense accuracy to higher compression.

    python experiments/shrinkbench_cifar10.py [--root DIR] [--download] [hydra overrides]
    python experiments/shrinkbench_cifar10.py --figures-only --root outputs/shrinkbench_cifar10
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from prunebench import plots

EXPERIMENT = "shrinkbench_cifar10"
REPO = Path(__file__).resolve().parents[1]


def draw(df: pd.DataFrame) -> Figure:
    models = sorted(df["model"].dropna().astype(str).unique()) or ["(none)"]
    fig = Figure(figsize=(3.6 * len(models), 2.9), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        plots.accuracy_vs_compression(df[df["model"].astype(str) == model], ax=ax)
        ax.set_title(f"{model}, CIFAR-10", fontsize=8)
    return fig


def data_dir(overrides: list[str]) -> str:
    """paths.data_dir / data.root as the study will resolve them (for the preflight check)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={EXPERIMENT}", *overrides])
    return str(OmegaConf.select(cfg, "data.root"))


def check_data(overrides: list[str]) -> None:
    """Fail now, with the data module's message, when CIFAR-10 is missing and may not be downloaded."""
    from prunebench.data import build_datamodule
    from prunebench.errors import DataNotFoundError

    root = data_dir(overrides)
    if not Path(root).is_absolute():
        root = str(REPO / root)
    try:
        build_datamodule("cifar10", seed=0, root=root, download=False).prepare_data()
    except DataNotFoundError as exc:
        print(f"error: {exc}\n(run with --download where the internet is reachable, or set paths.data_dir=...)",
              file=sys.stderr)
        raise SystemExit(2) from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=f"outputs/{EXPERIMENT}", help="results root")
    ap.add_argument("--download", action="store_true", help="download CIFAR-10 if it is missing")
    ap.add_argument("--figures-only", action="store_true", help="only re-render the figure from existing results")
    args, overrides = ap.parse_known_args()
    if not args.figures_only:
        if args.download:
            overrides = ["data.download=true", *overrides]
        else:
            check_data(overrides)
        cmd = [sys.executable, "-m", "prunebench", f"experiment={EXPERIMENT}", f"paths.root={args.root}", *overrides]
        print("$", " ".join(cmd), flush=True)
        start = time.perf_counter()
        code = subprocess.run(cmd, cwd=REPO).returncode
        if code:
            raise SystemExit(code)
        print(f"{EXPERIMENT}: {time.perf_counter() - start:.0f} s")
    from prunebench.results import load

    paths = plots.save_figure(draw(load(args.root)), Path(args.root) / "report" / EXPERIMENT)
    for p in paths:
        print("figure:", p)


if __name__ == "__main__":
    main()
