"""Lottery tickets on MNIST-1D (Greydanus 2020's reproduction of Frankle & Carbin 2019).

IMP with rewinding to initialisation ("ticket") vs the same masks with fresh random
weights ("reinit"), MLP, sparsities to ~99%, several seeds.
Expected runtime: <= 10 minutes on 2 CPU cores.
What the figure shows: test accuracy vs % of weights remaining (log axis, sparsity
growing to the right). Winning tickets match or beat the dense model down to ~10% of
the weights; the random-reinit control falls below them as sparsity grows.

    python experiments/lottery_mnist1d.py [hydra overrides]
"""

from prunebench import plots

if __name__ == "__main__":
    from _study import main

    main("lottery_mnist1d", __doc__, "lottery_mnist1d", lambda df: plots.accuracy_vs_remaining(df))
