"""Lottery tickets on MNIST-1D (Greydanus 2020's reproduction of Frankle & Carbin 2019).

IMP (global magnitude, 10 rounds to 99%) with weight rewinding to iteration 35 ("ticket")
or to initialisation ("ticket_init") vs fresh random weights every round ("reinit"), MLP
40-256-256-10, 3 seeds (conf/experiment/lottery_mnist1d.yaml).
Expected runtime: about 4 minutes on 2 CPU cores (<= 10 minutes).
What the figure shows: test accuracy vs % of weights remaining (log axis, sparsity
growing to the right). Winning tickets match or beat the dense model down to ~10% of
the weights; the random-reinit control falls below them as sparsity grows.

    python experiments/lottery_mnist1d.py [hydra overrides]
"""

from prunebench import plots

if __name__ == "__main__":
    from _study import main

    main("lottery_mnist1d", __doc__, "lottery_mnist1d", lambda df: plots.accuracy_vs_remaining(df))
