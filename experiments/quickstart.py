"""Quickstart: one-shot vs iterative magnitude pruning (MLP on MNIST-1D, 3 seeds).

Expected runtime: ~2-3 minutes on 2 CPU cores (seconds on a GPU).
What the figure shows: test accuracy vs achieved sparsity, mean ± std over 3 seeds, with
the dense model as a dashed line. Both strategies stay near dense accuracy at moderate
sparsity; past ~80-90% one-shot pruning (+ the same short fine-tune) falls away while
iterative magnitude pruning stays close to dense — the classic result of Han et al. 2015
and Frankle & Carbin 2019.

    python experiments/quickstart.py [hydra overrides]
"""

from prunebench import plots

if __name__ == "__main__":
    from _study import main

    main("quickstart", __doc__, "quickstart_accuracy_vs_sparsity", lambda df: plots.accuracy_vs_sparsity(df))
