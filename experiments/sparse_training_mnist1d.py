"""Sparse from the start: static, SET and RigL against dense training and IMP on MNIST-1D.

MLP 40-256-256-10 at 80/90/95% sparsity, 3 seeds (conf/experiment/sparse_training_mnist1d.yaml):
static, SET and RigL trained from the initialisation with a random ERK mask for the dense
run's steps; RigL also 2x and 5x as long; iterative magnitude pruning after training (3 rounds).
Expected runtime: 336 s measured (54 runs) on 2 shared CPU cores under load; the wall time is printed.
Figures (under <root>/report/):
- sparse_training_mnist1d: test accuracy vs sparsity, mean ± std over seeds, dense dashed;
- sparse_training_mnist1d_turnover: mask turnover (fraction of the first mask's live weights
  no longer live) against the optimizer step, SET and RigL at each sparsity, mean over seeds.

    python experiments/sparse_training_mnist1d.py [hydra overrides]
"""

from __future__ import annotations

from pathlib import Path

from prunebench import plots


def turnover_vs_step(root: str, ax=None):
    """Mask turnover against the optimizer step from every DST level's dst.csv, mean over seeds."""
    import json

    import pandas as pd

    frames = []
    for hist in sorted(Path(root).glob("runs/*/levels/1/dst.csv")):
        run = hist.parents[2]
        rows = pd.read_csv(run / "rows.csv")
        level = rows[rows["level"] == 1]
        if not len(level) or "step" not in pd.read_csv(hist).columns:
            continue
        d = pd.read_csv(hist)
        if "turnover" not in d.columns:
            continue
        label = json.loads((run / "config.json").read_text()).get("label") or level["label"].iloc[0]
        frames.append(d.assign(label=label, target=float(level["target_sparsity"].iloc[0]),
                               seed=int(level["seed"].iloc[0])))
    ax = ax if ax is not None else plots.new_axes(figsize=(7.5, 3.6))
    if not frames:
        ax.text(0.5, 0.5, "no mask updates recorded", ha="center", transform=ax.transAxes)
        return ax
    df = pd.concat(frames, ignore_index=True)
    styles = {0.8: "-", 0.9: "--", 0.95: ":"}
    colours = {label: f"C{i}" for i, label in enumerate(sorted(df["label"].unique()))}
    for (label, target), g in df.groupby(["label", "target"]):
        m = g.groupby("step")["turnover"].mean()
        ax.plot(m.index, 100 * m.values, styles.get(round(target, 2), "-."), color=colours[label],
                label=f"{label} @ {100 * target:.0f}%")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mask turnover vs the first mask (% of live weights)")
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return ax


if __name__ == "__main__":
    from _study import parse, render, run_study

    experiment = "sparse_training_mnist1d"
    args, overrides = parse(__doc__, f"outputs/{experiment}")
    if not args.figures_only:
        seconds = run_study(experiment, args.root, overrides)
        print(f"{experiment}: {seconds:.0f} s")
    render(args.root, experiment, lambda df: plots.accuracy_vs_sparsity(df))
    paths = plots.save_figure(turnover_vs_step(args.root), Path(args.root) / "report" / f"{experiment}_turnover")
    for p in paths:
        print("figure:", p)
