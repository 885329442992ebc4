"""SNIP (Lee et al. 2019): LeNet-300-100 pruned to 95% at initialisation, then trained.

One-shot SNIP scores from one batch of 100 at initialisation, global allocation, then the
sparse net trained; the dense net trained as long is the reference
(conf/experiment/snip_lenet300.yaml). Needs MNIST: ``data.root=...`` or ``data.download=true``.
Expected runtime: see the config (60 LeNet-300-100 epochs on a CPU).
What the figure shows: test accuracy vs sparsity of SNIP at init and of one-shot magnitude
after training (no retraining); claims.md judges the paper's +0.7 pp error at 95%.

    python experiments/snip_lenet300.py data.root=../shared/data
"""

from prunebench import plots

if __name__ == "__main__":
    from _study import main

    main("snip_lenet300", __doc__, "snip_lenet300", lambda df: plots.accuracy_vs_sparsity(df))
