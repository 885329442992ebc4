"""Han et al. 2015: LeNet-300-100 on MNIST pruned ~12x with no loss of test accuracy.

Iterative layer-wise magnitude pruning with fine-tuning, 8 rounds to 8% of the hidden
weights and 26% of the output layer's (conf/experiment/han_lenet300.yaml). Needs MNIST:
``data.root=...`` (a folder holding MNIST/raw/) or ``data.download=true``.
Expected runtime: see the config (78 LeNet-300-100 epochs on a CPU).
What the figure shows: test accuracy vs compression; the report's claims.md judges the
12x and the "no loss" claims.

    python experiments/han_lenet300.py data.root=../shared/data
"""

from prunebench import plots

if __name__ == "__main__":
    from _study import main

    main("han_lenet300", __doc__, "han_lenet300", lambda df: plots.accuracy_vs_compression(df))
