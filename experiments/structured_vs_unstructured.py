"""Structured (channel) vs unstructured (magnitude) pruning at matched parameter sparsity.

VGG-11-BN (width 0.25) on CIFAR-shaped synthetic data (3x32x32, 10 teacher-labelled
classes, 8192 training samples), 2 seeds: iterative channel pruning (L1 filter norm, same
fraction per layer, target = parameters) and iterative global magnitude pruning, both to
90% in 3 geometric levels with 2 fine-tune epochs each, plus one-shot channel pruning to
90% as a control. Config: conf/experiment/structured_vs_unstructured.yaml.

Expected runtime: ~5 minutes on 2 CPU cores (measured 296 s wall on this shared 2-core
machine with another job running; the config pins ``trainer.threads=1``, which is what
keeps training and latency timings sane there); well under a minute on a GPU
(``trainer=gpu``).

What the figure shows (three panels, test accuracy on the y axis, mean ± std over
seeds, dense model = black star + dashed line): accuracy vs nonzero parameters and vs
per-sample FLOPs (log axes) and vs measured batch-1 latency. At the same parameter count
unstructured magnitude pruning keeps more accuracy than removing whole channels (measured:
~47-50% vs ~35-43%, dense ~41%), and its FLOPs counted on the sparse tensors fall too
(5.5x at 90%) — but its measured latency stays at the dense model's (~1.06 ms, speedup
~1.0), because zeros in dense tensors are still multiplied. Channel pruning's points move
left on the latency panel (0.67 / 0.47 / 0.36 ms, ~1.7x / 2.4x / 3.1x faster at 54/78/90%):
the pruned model is physically smaller and really faster. The standard report
(``<root>/report``) has the same curves one per figure, plus speedup plots.

    python experiments/structured_vs_unstructured.py [--root DIR] [hydra overrides]
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from prunebench import plots

COLUMNS = ["label", "structure", "level", "target_sparsity", "sparsity", "params", "params_nonzero", "flops",
           "speedup_theoretical", "latency_ms", "speedup_measured", "latency_ms_large", "acc_pruned", "test_acc"]


def table(df: pd.DataFrame) -> pd.DataFrame:
    """The numbers behind the figure: one row per (curve, level), first seed."""
    d = df.assign(label=plots.curve_labels(df))
    d = d[d["seed"] == d["seed"].min()].sort_values(["label", "level"])
    return d[[c for c in COLUMNS if c in d.columns]].reset_index(drop=True)


def draw(df: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(10.2, 2.9), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, x in zip(axes, ("params", "flops", "latency_ms")):
        plots.accuracy_vs_cost(df, ax=ax, x=x)
        if x != "latency_ms" and ax.get_legend() is not None:
            ax.get_legend().remove()
    print(plots.to_markdown(table(df), floatfmt=".4g"))
    return fig


if __name__ == "__main__":
    from _study import main

    main("structured_vs_unstructured", __doc__, "structured_vs_unstructured", draw)
