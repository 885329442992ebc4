"""Quickstart: one-shot vs iterative magnitude pruning (MLP on MNIST-1D, 3 seeds).

Expected runtime: ~30 s on 2 CPU cores (measured 27 s wall, 21 runs).
What the figure shows: test accuracy vs achieved sparsity, mean ± std over 3 seeds, with
the dense model as a dashed line. Both strategies stay near dense accuracy at moderate
sparsity; from ~80% on one-shot pruning (+ the same short fine-tune) falls away much
faster than iterative magnitude pruning (the classic result of Han et al. 2015): measured
test accuracy at 90% sparsity 48.8% (iterative) vs 40.0% (one-shot), dense 60.4%; at 98%
28.5% vs 13.3%.

    python experiments/quickstart.py [hydra overrides]
"""

from prunebench import plots

if __name__ == "__main__":
    from _study import main

    main("quickstart", __doc__, "quickstart_accuracy_vs_sparsity", lambda df: plots.accuracy_vs_sparsity(df))
