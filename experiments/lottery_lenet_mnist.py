"""Lottery tickets with LeNet-300-100 on MNIST (Frankle & Carbin 2019, Figure 3 protocol).

Adam 1.2e-3, batch 60, layer-wise pruning 20% per round (10% for the output layer),
rewinding to initialisation, with a random-reinit control. Needs the MNIST files: pass
``data.root=...`` pointing at a folder holding MNIST/raw/ (e.g. ../shared/data) or
``data.download=true``.
Expected runtime: see conf/experiment/lottery_lenet_mnist.yaml (a CPU budget is the
default; the full-length protocol is documented there for a GPU).
What the figure shows: test accuracy vs % weights remaining; tickets stay at or above
dense accuracy to a few % of weights remaining, reinit degrades much earlier.

    python experiments/lottery_lenet_mnist.py data.root=../shared/data
"""

from prunebench import plots

if __name__ == "__main__":
    from _study import main

    main("lottery_lenet_mnist", __doc__, "lottery_lenet_mnist", lambda df: plots.accuracy_vs_remaining(df))
