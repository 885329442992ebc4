"""Lottery tickets on MNIST-1D (Greydanus 2020's reproduction of Frankle & Carbin 2019).

IMP (global magnitude, 10 rounds to 99%) with weight rewinding to iteration 35 ("ticket")
or to initialisation ("ticket_init") vs fresh random weights every round ("reinit"), MLP
40-256-256-10, 3 seeds (conf/experiment/lottery_mnist1d.yaml).
Expected runtime: about 2 minutes on 2 CPU cores (measured 2 min 8 s; <= 10 minutes).
What the figure shows: test accuracy vs % of weights remaining (log axis, sparsity
growing to the right). Winning tickets match the dense model down to ~25% of the weights
and stay within about a point of it (inside its seed spread) at 10% (measured at 90%
sparsity: ticket 62.1 ± 0.3%, dense 63.3 ± 1.1%); the random-reinit control falls below them as sparsity grows
(52.9 ± 0.4% at 90%).

    python experiments/lottery_mnist1d.py [hydra overrides]
"""

from prunebench import plots

if __name__ == "__main__":
    from _study import main

    main("lottery_mnist1d", __doc__, "lottery_mnist1d", lambda df: plots.accuracy_vs_remaining(df))
