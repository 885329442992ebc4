"""Fused CPU kernel for the selection pass of ``allocation._select`` (optional: numba).

One pass over a tensor's scores writes its new keep-mask ``score > lo`` (and the old mask),
counts what it kept and gathers, in position order, the few scores strictly inside the
bracket ``(lo, hi)`` with their positions. In stock torch this is four elementwise kernels
plus a ``nonzero`` per chunk, each a full read of the chunk; fused, it costs about one
memory pass (benchmarks/global_select.py prints both side by side).

The loop works on 32-score blocks: a vectorised part writes the mask and counts the block's
hits; only a block with a hit runs the branch-free compaction that gathers them. Slices,
not index arithmetic over the whole array, are what let LLVM vectorise the first part.

numba is an optional dependency (``pip install 'prunebench[fast]'``); without it, or on a
GPU, ``allocation`` runs the same selection with torch ops. The kernels are compiled on
first use (about a second, then cached on disk where numba can write its cache), and only
for selections of at least ``allocation.KERNEL_MIN_NUMEL`` scores, so small models never
pay for the compilation.
"""

from __future__ import annotations

import functools
import os

import numpy as np

BLOCK = 32  # scores per block; a block with a hit is compacted whole (see module doc)


def available() -> bool:
    """numba importable and not switched off (``PRUNEBENCH_NUMBA=0``)."""
    if os.environ.get("PRUNEBENCH_NUMBA", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _jit(fn):
    import numba

    opts = {"nogil": True, "boundscheck": False, "error_model": "numpy"}
    try:
        return numba.njit(cache=True, **opts)(fn)
    except RuntimeError:  # no writable cache location: compile in memory only
        return numba.njit(**opts)(fn)


def _make_bracket_pass(with_keep: bool):
    """The fused pass, specialised on whether there is an old mask to read (a constant to
    numba, so the version without one has no dead load in its loop)."""

    def bracket_pass(s, keep, lo, hi, out, vals, pos, m0):  # pragma: no cover - compiled by numba
        """out = (s > lo) & keep; gather s in (lo, hi) with keep into vals/pos from m0 on.

        Returns (# kept, # inside the bracket, gathered in full?). The gather stops, and the
        third value is False, when the buffers would overflow; the counts stay exact.
        """
        n = s.shape[0]
        m = m0
        cap = vals.shape[0]
        above = 0
        inside = 0
        full = True
        for b0 in range(0, n, BLOCK):
            ss = s[b0 : b0 + BLOCK]
            kk = keep[b0 : b0 + BLOCK]
            oo = out[b0 : b0 + BLOCK]
            c = 0
            h = 0
            for i in range(ss.shape[0]):
                v = ss[i]
                x = np.uint8(v > lo)
                if with_keep:
                    x &= kk[i]
                oo[i] = x
                c += x
                h += x & np.uint8(v < hi)
            above += c
            if h:
                inside += h
                if m + BLOCK > cap:
                    full = False
                    continue
                for i in range(ss.shape[0]):  # branch-free compaction: write always, advance on a hit
                    v = ss[i]
                    vals[m] = v
                    pos[m] = b0 + i
                    m += oo[i] & np.uint8(v < hi)
        return above, inside, full

    return bracket_pass


@functools.cache
def compiled():
    """(pass with an old mask, pass without), compiled on first call."""
    return _jit(_make_bracket_pass(True)), _jit(_make_bracket_pass(False))


def as_numpy(t):
    """A contiguous 1-D CPU tensor as a numpy array sharing its memory; bool as uint8 0/1
    (the kernels do byte arithmetic on masks: LLVM vectorises that, not numba's bool)."""
    a = t.numpy()
    return a.view(np.uint8) if a.dtype == np.bool_ else a


def bracket_pass(scores, keep, lo: float, hi: float, out, vals: np.ndarray, pos: np.ndarray, m0: int):
    """Run the fused pass on torch tensors (``keep`` None: nothing pruned); see ``_make_bracket_pass``."""
    f, f_all = compiled()
    lo32, hi32 = np.float32(lo), np.float32(hi)
    s, o = as_numpy(scores), as_numpy(out)
    if keep is None:
        above, inside, full = f_all(s, o, lo32, hi32, o, vals, pos, m0)  # ``keep`` is not read
    else:
        above, inside, full = f(s, as_numpy(keep), lo32, hi32, o, vals, pos, m0)
    return int(above), int(inside), bool(full)
