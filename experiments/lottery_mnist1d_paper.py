"""Lottery tickets on MNIST-1D as in Greydanus's notebook (notebooks/lottery-tickets.ipynb).

Residual MLP 40-500-500-10, layer-wise magnitude pruning (output layer included), Adam 2e-2,
batch 100, 1501 steps per round, rewinding to initialisation, against the notebook's random
ticket (a random mask of the same per-layer sparsity, same initial weights); 3 seeds,
geometric to 95% in 12 rounds (conf/experiment/lottery_mnist1d_paper.yaml).
Expected runtime: see the config (a CPU budget: 75 trainings of 1501 steps).
What it shows: test accuracy vs % of weights remaining; the notebook's tickets rise ~9 points
above dense at ~92% sparsity, the random tickets fall below from ~90% on. The report's
claims.md gives the verdict for each of the notebook's numbers.

    python experiments/lottery_mnist1d_paper.py [hydra overrides]
"""

from prunebench import plots

if __name__ == "__main__":
    from _study import main

    main("lottery_mnist1d_paper", __doc__, "lottery_mnist1d_paper", lambda df: plots.accuracy_vs_remaining(df))
