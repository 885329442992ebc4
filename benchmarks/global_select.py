"""Global selection at scale: the sort-free exact selection against one memory pass,
``torch.kthvalue`` and the argsort implementation it replaced, side by side.

For 10⁶, 10⁷ and 10⁸ float32 scores (split into layers of at most 2.4·10⁶, like a large
model's), prints per method the median wall time, its ratio to one memory pass
(``scores.abs().sum()`` over every layer) and the peak extra memory (RSS above the
baseline, sampled by a thread; ``ru_maxrss`` cannot be reset) as a multiple of the scores'
own size. Methods run in turn within each repeat. Each size runs twice: level 1 (nothing pruned yet) and an iterative level where
89 % is already pruned (its -inf scores tie). Sizes whose argsort would need more memory
than is free are run without the argsort column (the script says so). Masks of the new
selection are checked equal to the argsort's wherever both ran.

Two implementations of the same selection are timed: ``new (numba)``, the fused kernel of
``prunebench/pruning/kernels.py`` that ``allocate`` uses from 2²¹ scores on when numba is
installed (``pip install 'prunebench[fast]'``), and ``new (torch)``, the same algorithm on
stock torch ops (what runs without numba, on a GPU, and below 2²¹ scores).

Target (issue 16): at 10⁸ weights, at most 3x one memory pass and at most 2x the weights'
own memory in peak extra memory.

Measured 2026-11-30 on the 2-core machine with nothing else running (load average below
1), torch 2.14 CPU, numba 0.68.1, 1 thread, ``python benchmarks/global_select.py``
(3 repeats, median; 11 minutes, the argsort most of it):

      weights pruned target         method         ms   x pass   peak MiB x weights
        1e+06   0.00   0.50       one pass        2.5     1.00        4.0      1.06
        1e+06   0.00   0.50    new (torch)        9.4     3.71        2.4      0.63
        1e+06   0.00   0.50       kthvalue       20.1     7.93       15.3      4.00
        1e+06   0.00   0.50  argsort (old)      108.4    42.78       36.2      9.50
        1e+07   0.00   0.50       one pass       13.8     1.00       10.7      0.28
        1e+07   0.00   0.50    new (numba)       26.6     1.92       13.2      0.35
        1e+07   0.00   0.50    new (torch)       69.8     5.04       16.3      0.43
        1e+07   0.00   0.50       kthvalue      198.7    14.36      152.6      4.00
        1e+07   0.00   0.50  argsort (old)     1398.0   101.01      325.4      8.53
        1e+07   0.89   0.90       one pass       12.7     1.00       10.7      0.28
        1e+07   0.89   0.90    new (numba)       24.1     1.89       12.8      0.33
        1e+07   0.89   0.90    new (torch)       61.5     4.83       15.4      0.40
        1e+08   0.00   0.50       one pass       87.2     1.00       24.4      0.06
        1e+08   0.00   0.50    new (numba)      180.5     2.07      113.4      0.30
        1e+08   0.00   0.50    new (torch)      545.0     6.25      145.0      0.38
        1e+08   0.00   0.50       kthvalue     2022.1    23.18     1525.9      4.00
        1e+08   0.00   0.50  argsort (old)    15896.7   182.22     3170.8      8.31
        1e+08   0.89   0.90       one pass       69.5     1.00       18.3      0.05
        1e+08   0.89   0.90    new (numba)      173.4     2.50      109.0      0.29
        1e+08   0.89   0.90    new (torch)      485.8     6.99      122.5      0.32
        1e+08   0.89   0.90       kthvalue     1287.9    18.53     1525.9      4.00
        1e+08   0.89   0.90  argsort (old)     9475.1   136.35     3160.9      8.29
    masks new (numba) == new (torch) == argsort (old): True in every case
    (the 1e6 rows have no numba line: below 2²¹ scores allocate() runs the torch ops)

Verdict at 10⁸: with numba, 2.1-2.5x one memory pass (target ≤ 3x: met) and 0.3x the
weights' memory at peak (target ≤ 2x: met); 50-90x faster than the argsort it replaced.
On torch ops alone it stays at 6-7x (missed): a bool comparison kernel alone costs about
1.7 reference passes on this CPU, and the torch path needs three of them plus a nonzero
per chunk. Earlier runs of the torch path under heavy load (load average 12-17) read
2.6-7x only because the reference pass was inflated 4-10x as well.

    python benchmarks/global_select.py               # 1e6, 1e7, 1e8
    python benchmarks/global_select.py --sizes 1e6 1e7 --repeats 5
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import threading
import time

import torch

from prunebench.pruning import allocation, kernels
from prunebench.pruning.allocation import allocate_global
from prunebench.pruning.mask import Mask

LAYER = 2_400_000  # a large layer of a 10⁸-weight model (e.g. 1536x1536)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: the peak may read low
        pass


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every millisecond."""

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        _trim()  # hand freed memory back to the OS, or reuse of it would hide a peak
        self.base = self.peak = rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss())

    @property
    def extra(self) -> int:
        return self.peak - self.base


def old_global(scores: dict[str, torch.Tensor], mask: Mask, target: float) -> Mask:
    """The argsort implementation (prunebench before issue 16)."""
    s = {}
    for name, keep in mask.items():
        t = torch.nan_to_num(scores[name].detach().float().flatten().clone(), nan=float("-inf"))
        t[~keep.flatten()] = float("-inf")
        s[name] = t
    flat = torch.cat(list(s.values()))
    n_prune = max(round(target * flat.numel()), flat.numel() - mask.nonzero)
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.argsort(flat, stable=True)[:n_prune]] = False
    out, start = {}, 0
    for name in s:
        out[name] = keep[start : start + s[name].numel()].view_as(mask[name])
        start += s[name].numel()
    return Mask(out)


def one_pass(scores: dict[str, torch.Tensor]) -> float:
    return sum(float(s.abs().sum()) for s in scores.values())


def kthvalue(scores: dict[str, torch.Tensor], k: int) -> float:
    return float(torch.kthvalue(torch.cat(list(scores.values())), k).values)


def measure(fns: dict[str, object], repeats: int) -> dict[str, tuple[float, int, object]]:
    """{name: (median s, peak extra bytes, last result)}, the functions run in turn each repeat,
    so a burst of load from other processes hits them alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    peaks = dict.fromkeys(fns, 0)
    outs: dict[str, object] = {}
    for r in range(repeats):
        for name, fn in fns.items():
            if r and name == "argsort (old)" and len(times[name]) >= 1 and times[name][0] > 20:
                continue  # the argsort at 10⁸ takes minutes: once is enough
            outs[name] = None
            gc.collect()
            with PeakRSS() as p:
                t0 = time.perf_counter()
                outs[name] = fn()
                times[name].append(time.perf_counter() - t0)
            peaks[name] = max(peaks[name], p.extra)
    return {k: (statistics.median(times[k]), peaks[k], outs[k]) for k in fns}


def case(n: int, pruned: float, target: float, repeats: int, with_old: bool) -> list[str]:
    g = torch.Generator().manual_seed(0)
    sizes = [LAYER] * (n // LAYER) + ([n % LAYER] if n % LAYER else [])
    scores = {f"l{i}.weight": torch.randn(m, generator=g).abs_() for i, m in enumerate(sizes)}
    mask = Mask({k: torch.rand(v.numel(), generator=g) >= pruned for k, v in scores.items()})
    k = max(round(target * n), n - mask.nonzero)
    weights_bytes = 4 * n
    fns = {"one pass": lambda: one_pass(scores)}
    if kernels.available() and n >= allocation.KERNEL_MIN_NUMEL:
        allocate_global(scores, mask, target)  # compile the kernel (or load it from numba's cache)
        fns["new (numba)"] = lambda: allocate_global(scores, mask, target)
    fns["new (torch)"] = lambda: torch_ops(allocate_global, scores, mask, target)
    fns["kthvalue"] = lambda: kthvalue(scores, k)
    if with_old:
        fns["argsort (old)"] = lambda: old_global(scores, mask, target)
    rows = measure(fns, repeats)
    base = rows["one pass"][0]
    lines = []
    for name, (t, peak, _) in rows.items():
        lines.append(f"{n:>11.0e} {pruned:>7.2f} {target:>6.2f} {name:>14} {t * 1e3:>10.1f} {t / base:>8.2f} "
                     f"{peak / 2**20:>10.1f} {peak / weights_bytes:>9.2f}")
    news = [name for name in rows if name.startswith("new")]
    ref_name, ref = ("argsort (old)", rows["argsort (old)"][2]) if with_old else (news[-1], rows[news[-1]][2])
    for name in news:
        if name != ref_name:
            same = all(torch.equal(rows[name][2][t], ref[t]) for t in ref)
            lines.append(f"{'':>11} masks {name} == {ref_name}: {same}")
    return lines


def torch_ops(fn, *args):
    """``fn`` with the fused kernel switched off: the selection runs on torch ops alone."""
    saved = allocation.KERNEL_MIN_NUMEL
    allocation.KERNEL_MIN_NUMEL = 1 << 62
    try:
        return fn(*args)
    finally:
        allocation.KERNEL_MIN_NUMEL = saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 1e8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-old", dest="old", action="store_false", help="skip the argsort column (minutes at 10⁸)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; time = median of {args.repeats}; "
          "peak = extra RSS during the call, x = / the scores' bytes (4 n)")
    if not kernels.available():
        print("numba is not installed (pip install 'prunebench[fast]'): the 'new (numba)' rows are skipped")
    print(f"'new (numba)': the fused kernel, which allocate() uses from {allocation.KERNEL_MIN_NUMEL:,} scores "
          "on when numba is installed; 'new (torch)': the same selection on torch ops alone")
    print(f"{'weights':>11} {'pruned':>7} {'target':>6} {'method':>14} {'ms':>10} {'x pass':>8} "
          f"{'peak MiB':>10} {'x weights':>9}")
    for size in args.sizes:
        n = int(size)
        need_case = n * (4 + 1 + 1)  # scores, old mask, new mask
        need_old = n * (4 + 4 + 8 + 8 + 1)  # + masked copy, concat, argsort values and indices
        if need_case * 1.5 > available():
            print(f"{n:>11.0e} skipped: needs about {need_case / 2**30:.1f} GiB, "
                  f"{available() / 2**30:.1f} GiB available")
            continue
        with_old = args.old and need_case + need_old < available() * 0.8
        if args.old and not with_old:
            print(f"{n:>11.0e} argsort column skipped: it needs about {need_old / 2**30:.1f} GiB more, "
                  f"{available() / 2**30:.1f} GiB available")
        for pruned, target in ((0.0, 0.5), (0.89, 0.9)):
            print("\n".join(case(n, pruned, target, args.repeats, with_old)), flush=True)


if __name__ == "__main__":
    main()
