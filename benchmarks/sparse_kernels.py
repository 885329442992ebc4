"""Where does a sparse format start to pay? CSR Linear vs dense, per layer shape and sparsity.

For LeNet-300-100's layers (784->300, 300->100, 100->10) and a 4096x4096 Linear, at batch
1 and 64, times ``F.linear`` (dense) against ``torch.sparse.mm`` on the CSR weight
(``prunebench.sparse_kernels.linear_kernel_timing``: the two timed in turn, best of the
rounds' medians) for random unstructured masks at 50..99 % sparsity, and prints the
speedup per sparsity and the crossover: the lowest sparsity from which the sparse path
stays faster, or "never" on this CPU.

Measured 2026-11-29 (torch 2.14 CPU, 1 thread, the 2-core machine shared with other jobs,
load average about 12, so single figures are noisy; defaults, about 4 minutes):

    layer          batch  dense_ms    50%    70%    80%    90%    95%    98%    99%  crossover
    lenet300.fc1       1    0.0217   0.10   0.10   0.29   0.36   0.61   1.04   0.87  never
    lenet300.fc1      64    0.2377   0.40   0.56   1.27   1.53   2.17   3.04   3.01  80%
    lenet300.fc2       1    0.0042   0.10   0.14   0.21   0.26   0.26   0.16   0.26  never
    lenet300.fc2      64    0.0384   0.47   0.59   0.63   1.08   0.85   1.53   1.25  98%
    lenet300.fc3       1    0.0024   0.16   0.23   0.17   0.16   0.16   0.16   0.18  never
    lenet300.fc3      64    0.0046   0.16   0.26   0.21   0.27   0.18   0.18   0.27  never
    linear4096         1   42.5760   0.09   0.31   0.48   0.92   1.88  71.61  94.79  95%
    linear4096        64  140.7515   0.76   1.06   1.58   3.19  18.22   9.70  75.26  70%

Reading: at batch 1 the small LeNet layers are call-overhead bound (a few microseconds),
so CSR never pays; at batch 64 the 784x300 layer gains from about 80 % sparsity. The
4096x4096 layer is memory bound and CSR pays from 70-95 %; its very large figures at
98-99 % partly reflect the dense kernel's time under load (42 ms for a 64 MB matrix-vector
product), so rerun on a quiet machine before quoting them.

    python benchmarks/sparse_kernels.py
    python benchmarks/sparse_kernels.py --rounds 5 --repeats 20 --threads 2
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from prunebench.sparse_kernels import crossover_sparsity, linear_kernel_timing, semi_structured_supported

SHAPES = [("lenet300.fc1", 784, 300), ("lenet300.fc2", 300, 100), ("lenet300.fc3", 100, 10),
          ("linear4096", 4096, 4096)]
SPARSITIES = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]


def masked_linear(n_in: int, n_out: int, sparsity: float, gen: torch.Generator) -> nn.Linear:
    lin = nn.Linear(n_in, n_out)
    with torch.no_grad():
        lin.weight.mul_(torch.rand(lin.weight.shape, generator=gen) >= sparsity)
    return lin


def two_four_linear(n_in: int, n_out: int, gen: torch.Generator) -> nn.Linear:
    """A Linear whose weight keeps the two largest of every four inputs (2:4, 50 %)."""
    lin = nn.Linear(n_in, n_out)
    with torch.no_grad():
        w = lin.weight.view(n_out, n_in // 4, 4)
        w.scatter_(-1, w.abs().argsort(-1)[..., :2], 0.0)
    return lin


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--sparsities", nargs="+", type=float, default=SPARSITIES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cuda: CSR on cuSPARSE, plus 2:4 rows on Ampere or newer")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} thread(s); speedup = dense ms / CSR ms, "
          f"best of {args.rounds} interleaved rounds of {args.repeats}")
    print(f"{'layer':<14} {'batch':>5} {'dense_ms':>9} " + " ".join(f"{s:>6.0%}" for s in args.sparsities)
          + "  crossover")
    for name, n_in, n_out in SHAPES:
        for batch in args.batches:
            x = torch.randn(batch, n_in, generator=gen).to(device)
            speedups, dense_ms = [], []
            for s in args.sparsities:
                t = linear_kernel_timing(masked_linear(n_in, n_out, s, gen).to(device), x, rounds=args.rounds,
                                         repeats=args.repeats)
                speedups.append(t.speedup)
                dense_ms.append(t.dense_ms)
            cross = crossover_sparsity(args.sparsities, speedups)
            print(f"{name:<14} {batch:>5} {sorted(dense_ms)[len(dense_ms) // 2]:>9.4f} "
                  + " ".join(f"{x:>6.2f}" for x in speedups)
                  + f"  {'never' if cross is None else f'{cross:.0%}'}", flush=True)
    if not semi_structured_supported(device):
        print("2:4 semi-structured: not tried (needs a CUDA GPU of compute capability 8.0 or newer)")
        return
    print("2:4 semi-structured (fp16) vs the same layer dense in fp16:")
    for name, n_in, n_out in SHAPES:
        for batch in args.batches:
            x = torch.randn(batch, n_in, generator=gen).to(device)
            t = linear_kernel_timing(two_four_linear(n_in, n_out, gen).to(device), x, rounds=args.rounds,
                                     repeats=args.repeats)
            verdict = f"{t.speedup:.2f}x" if t.format == "2:4" else "refused by torch (shape), CSR instead"
            print(f"{name:<14} {batch:>5} {t.dense_ms:>9.4f}  2:4 {verdict}", flush=True)


if __name__ == "__main__":
    main()
