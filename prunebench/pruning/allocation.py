"""Allocation: turn scores into a mask at a target sparsity.

``global`` ranks all prunable weights together (layers end up with different sparsities);
``layer`` prunes every tensor to the same sparsity; ``erk`` (Erdős–Rényi-Kernel, Evci et
al. 2020) gives each tensor a density proportional to ``sum(shape) / prod(shape)``, so
small layers stay denser than large ones. Weights already pruned stay pruned
(their score is forced to -inf), so masks never regrow and an iterative schedule removes
a fraction of what remains.

Counts are exact: global scope removes ``round(target * total)`` weights in all;
layer scope removes ``round(target * numel)`` from each tensor, so the achieved sparsity
is the target to within one weight per tensor; erk keeps ``round((1 - target) * total)``
weights in all, split by largest remainders. Ties are broken by position (as a stable
sort would) so the same scores always give the same mask.

No scope sorts: ``_select`` finds the exact threshold from a strided sample, one pass and
``kthvalue`` on the few scores near it, so a 10⁸-weight model is allocated in a few
passes over its scores and a fraction of their memory (benchmarks/global_select.py).
With numba installed (``prunebench[fast]``), selections over at least
``KERNEL_MIN_NUMEL`` CPU scores run that pass as one fused kernel (``kernels.py``): about
two memory passes in all at 10⁸ scores instead of six to seven on torch ops; same masks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import torch

from prunebench.errors import ConfigError
from prunebench.pruning import kernels
from prunebench.pruning.mask import Mask
from prunebench import catalog
from prunebench.registry import Registry

AllocateFn = Callable[[Mapping[str, torch.Tensor], Mask, float], Mask]

ALLOCATIONS: Registry[AllocateFn] = Registry("pruning.scope", catalog.SCOPES)


# Elements per step of the selection passes: small enough that a step's temporaries stay
# in cache (each pass then costs about one read of the scores), large enough that the
# per-call overhead of torch is negligible.
_CHUNK = 1 << 16
_SAMPLE = 1 << 17  # scores sampled (by stride) to bracket the threshold
_FMAX = torch.finfo(torch.float32).max


def _layer_views(scores: Mapping[str, torch.Tensor], mask: Mask, names: list[str]) -> list[_Layer]:
    out = []
    for name in names:
        if name not in scores:
            raise KeyError(f"criterion returned no score for {name}")
        s = scores[name].detach()
        s = (s if s.dtype == torch.float32 else s.float()).reshape(-1)  # a view when already flat float32
        keep = mask[name].reshape(-1).to(s.device)
        if keep.device.type == "cpu":
            alive = int(np.count_nonzero(keep.numpy()))  # 5x faster than torch's count_nonzero here
        else:
            alive = int(torch.count_nonzero(keep))
        out.append(_Layer(s, None if alive == keep.numel() else keep, alive))
    return out


class _Layer:
    """One tensor's flat scores and old keep-mask (None when nothing is pruned yet).

    The selection never materialises masked scores: a pruned weight, like a NaN score,
    counts as ``-inf`` through how each comparison is written (``>`` is false for both).
    A score of ±inf counts as ±(largest float), as ``nan_to_num`` made it before: that
    only matters for bounds at those extremes, so only then is each chunk mapped.
    """

    __slots__ = ("scores", "keep", "alive")

    def __init__(self, scores: torch.Tensor, keep: torch.Tensor | None, alive: int) -> None:
        self.scores, self.keep, self.alive = scores, keep, alive

    def chunks(self, *bounds: float):  # (start, scores chunk, keep chunk or None)
        extreme = any(not -_FMAX < b < _FMAX for b in bounds)
        n = self.scores.numel()
        for i in range(0, n, _CHUNK):
            s = self.scores[i : i + _CHUNK]
            yield i, torch.nan_to_num(s, nan=float("-inf")) if extreme else s, \
                None if self.keep is None else self.keep[i : i + _CHUNK]


def _gt(s: torch.Tensor, keep: torch.Tensor | None, v: float) -> torch.Tensor:
    """``masked score > v`` (pruned weights and NaN scores are -inf, so never above)."""
    out = s > v
    return out if keep is None else out.logical_and_(keep)


def _sample(layers: list[_Layer], n: int, size: int = 0, sort: bool = True) -> torch.Tensor:
    """Masked scores at every ``step``-th global position (deterministic), sorted unless asked not."""
    # A smaller sample for small inputs: its sort is the fixed cost of a selection.
    step = max(1, n // min(size or _SAMPLE, max(4096, n // 64)))
    parts, pos = [], 0
    for layer in layers:
        off = (-pos) % step
        s = layer.scores[off::step].cpu()
        if layer.keep is not None:
            s = s.masked_fill(~layer.keep[off::step].cpu(), float("-inf"))
        parts.append(torch.nan_to_num(s, nan=float("-inf")))
        pos += layer.scores.numel()
    sample = torch.cat(parts)
    return torch.sort(sample).values if sort else sample


def _bracket_counts(layers: list[_Layer], lo: float, hi: float) -> tuple[int, int, torch.Tensor]:
    """(# masked scores < lo, # == lo, the scores strictly inside (lo, hi)), in one pass."""
    n_lt = n_le = 0
    inside = []
    for _, s, keep in _layers_chunks(layers, lo, hi):
        above = _gt(s, keep, lo)
        n_le += s.numel() - int(torch.count_nonzero(above))
        if lo > float("-inf"):  # below -inf there is nothing; pruned and NaN tie at -inf
            ge = s >= lo  # false for NaN: below lo, as -inf
            n_lt += s.numel() - int(torch.count_nonzero(ge if keep is None else ge.logical_and_(keep)))
        sel = above.logical_and_(s < hi)
        if bool(sel.any()):
            inside.append(s[sel].cpu())
    return n_lt, n_le - n_lt, torch.cat(inside) if inside else torch.empty(0)


def _layers_chunks(layers: list[_Layer], *bounds: float):
    for layer in layers:
        yield from layer.chunks(*bounds)


def _threshold(layers: list[_Layer], n: int, k: int) -> tuple[float, int, int]:
    """(v, # masked scores < v, # == v) for v the ``k``-th smallest masked score (1 ≤ k ≤ n).

    A strided sample brackets v between two sample quantiles; one pass counts what lies
    below the bracket and gathers what lies inside it, and ``kthvalue`` on that small set
    gives v exactly. Should the bracket miss, it widens and the pass repeats; the widest
    bracket is (-inf, +inf), which cannot miss.
    """
    sample = _sample(layers, n)
    widen = 2.0
    while True:
        lo, hi = _bounds(sample, k / n, widen)
        n_lt, n_eq, inside = _bracket_counts(layers, lo, hi)
        if n_lt < k <= n_lt + n_eq:
            return lo, n_lt, n_eq
        below = n_lt + n_eq
        if below < k <= below + inside.numel():
            v = float(torch.kthvalue(inside, k - below).values)
            return v, below + int((inside < v).sum()), int((inside == v).sum())
        if lo == float("-inf") and hi == float("inf"):  # (-inf, inf) holds every score: cannot miss
            raise AssertionError(f"selection missed the widest bracket: k={k}, n={n}")
        widen *= 4.0


def _select(layers: list[_Layer], k: int) -> list[torch.Tensor]:
    """New flat keep-masks pruning the ``k`` lowest masked scores over ``layers`` taken in
    order as one sequence, ties broken by position: exactly what a stable ascending sort of
    the concatenated masked scores would prune, without the sort.

    Usually one pass: a strided sample brackets the threshold in (lo, hi); the pass writes
    ``score > lo`` as the new mask and gathers the few scores inside the bracket with their
    positions; ``kthvalue`` on those finds the threshold and the lowest of them (ties by
    position) are cleared. Should the bracket miss, ``_threshold`` finds it exactly and a
    second pass writes the mask.
    """
    n = sum(layer.scores.numel() for layer in layers)
    outs = [torch.empty(layer.scores.numel(), dtype=torch.bool, device=layer.scores.device) for layer in layers]
    if k <= 0:
        for out, layer in zip(outs, layers):
            out.copy_(layer.keep) if layer.keep is not None else out.fill_(True)
        return outs
    if k >= n:
        for out in outs:
            out.fill_(False)
        return outs
    if _kernel_applies(layers, n) and _kernel_select(layers, n, k, outs):
        return outs
    sample = _sample(layers, n)
    lo, hi = _bounds(sample, k / n, 1.0)
    above, where, inside = 0, [], []
    for j, (out, layer) in enumerate(zip(outs, layers)):
        buf = torch.empty(min(_CHUNK, layer.scores.numel()), dtype=torch.bool, device=out.device)
        for i, s, keep in layer.chunks(lo, hi):
            o, sel = out[i : i + s.numel()], buf[: s.numel()]
            torch.gt(s, lo, out=o)
            if keep is not None:
                o.logical_and_(keep)
            above += int(torch.count_nonzero(o))  # while the chunk is in cache
            torch.lt(s, hi, out=sel).logical_and_(o)
            pos = sel.nonzero().squeeze(1)
            if pos.numel():
                where.append((j, pos + i))
                inside.append(s[pos])
    values = torch.cat(inside).cpu() if inside else torch.empty(0)
    return _finish(layers, n, k, outs, above, where, values)


def _finish(layers: list[_Layer], n: int, k: int, outs: list[torch.Tensor], above: int,
            where: list[tuple[int, torch.Tensor]], values: torch.Tensor) -> list[torch.Tensor]:
    """Clear the lowest of the gathered bracket scores (ties by position) from the masks
    ``score > lo``; ``where`` holds (layer, positions) in gathering order, ``values`` (CPU)
    their scores. Falls back to ``_select_exact`` when the bracket missed the threshold."""
    if _clear_lowest(k - (n - above), outs, where, values.numpy()):
        return outs
    return _select_exact(layers, n, k, outs)


def _clear_lowest(need: int, outs: list[torch.Tensor], where: list[tuple[int, torch.Tensor]],
                  vals: np.ndarray) -> bool:
    """Prune the ``need`` lowest of the gathered scores ``vals`` (ties: the first gathered,
    i.e. by position) at ``where``; False, changing nothing, unless 0 <= need <= len(vals)."""
    if not 0 <= need <= vals.size:
        return False
    if need:
        v = np.partition(vals, need - 1)[need - 1]  # O(n), no sort
        drop = vals < v
        quota = need - int(np.count_nonzero(drop))  # ties at v to prune: the first ones by position
        drop[np.flatnonzero(vals == v)[:quota]] = True
        start = 0
        for j, pos in where:
            d = drop[start : start + pos.numel()]
            start += pos.numel()
            if outs[j].device.type == "cpu":
                outs[j].numpy()[pos.numpy()[d]] = False
            else:
                outs[j][pos[torch.from_numpy(d).to(pos.device)]] = False
    return True


# Selections of at least this many scores run the fused numba kernel when it is installed
# (``prunebench[fast]``); below it the torch path is as fast and nothing is compiled.
KERNEL_MIN_NUMEL = 1 << 21
_KERNEL_CAP = 2.0  # gather room, as a multiple of what the bracket should hold


def _kernel_applies(layers: list[_Layer], n: int) -> bool:
    """The fused kernel can run: CPU float32 contiguous scores, enough of them, numba importable."""
    if n < KERNEL_MIN_NUMEL:
        return False
    if any(layer.scores.device.type != "cpu" or layer.scores.dtype != torch.float32
           or not layer.scores.is_contiguous() for layer in layers):
        return False
    return kernels.available()


def _kernel_select(layers: list[_Layer], n: int, k: int, outs: list[torch.Tensor]) -> bool:
    """``_select`` with the fused kernel (0 < k < n): True when ``outs`` hold the masks.

    A four-times larger sample than the torch path's brackets the threshold (``np.partition``
    finds its two bounds without a sort), so half as many scores fall inside it; one kernel
    pass per tensor writes ``score > lo`` and gathers those; ``np.partition`` on them gives
    the exact threshold. False, having written nothing that counts, when a bound is at the
    extremes (``nan_to_num`` semantics: the torch path handles those) or the bracket missed.
    """
    q = k / n
    sample = _sample(layers, n, size=_SAMPLE * 4, sort=False).numpy()
    m = sample.size
    margin = _margin(m, q, 1.0)
    i_lo, i_hi = math.floor(q * m - margin) - 1, math.ceil(q * m + margin)
    if i_lo < 0 or i_hi >= m:
        return False
    part = np.partition(sample, [i_lo, i_hi])
    lo, hi = float(part[i_lo]), float(part[i_hi])
    if not (-_FMAX < lo < _FMAX and -_FMAX < hi < _FMAX):
        return False
    cap = int(_KERNEL_CAP * n * (i_hi - i_lo + 1) / m) + 64 * kernels.BLOCK  # twice what the bracket should hold
    vals, pos = np.empty(cap, dtype=np.float32), np.empty(cap, dtype=np.int64)
    above, m_at, spans = 0, 0, []
    for j, (out, layer) in enumerate(zip(outs, layers)):
        kept, inside, full = kernels.bracket_pass(layer.scores, layer.keep, lo, hi, out, vals, pos, m_at)
        if not full:
            return False
        above += kept
        if inside:
            spans.append((j, m_at, m_at + inside))
            m_at += inside
    where = [(j, torch.from_numpy(pos[a:b])) for j, a, b in spans]
    return _clear_lowest(k - (n - above), outs, where, vals[:m_at])


def _margin(m: int, q: float, widen: float) -> float:
    return widen * 4.0 * math.sqrt(m * q * (1.0 - q)) + 2.0


def _bounds(sample: torch.Tensor, q: float, widen: float) -> tuple[float, float]:
    """Sample values around quantile ``q``, ``widen`` x four standard deviations of its rank apart."""
    m = sample.numel()
    margin = _margin(m, q, widen)
    i_lo, i_hi = math.floor(q * m - margin) - 1, math.ceil(q * m + margin)
    lo = float(sample[i_lo]) if i_lo >= 0 else float("-inf")
    hi = float(sample[i_hi]) if i_hi < m else float("inf")
    return lo, hi


def _select_exact(layers: list[_Layer], n: int, k: int, outs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The second-chance path of ``_select``: exact threshold first, then one writing pass."""
    v, n_lt, n_eq = _threshold(layers, n, k)
    quota = k - n_lt  # ties at v to prune, the first ones by position; 1 ≤ quota ≤ n_eq
    partial = quota < n_eq
    for out, layer in zip(outs, layers):
        for i, s, keep in layer.chunks(v):
            o = out[i : i + s.numel()]
            torch.gt(s, v, out=o)
            if keep is not None:
                o.logical_and_(keep)
            if not partial:
                continue
            eq = ~o if v == float("-inf") else (s == v if keep is None else (s == v).logical_and_(keep))
            n_here = int(torch.count_nonzero(eq))
            if quota >= n_here:
                quota -= n_here
                continue
            if quota > 0:  # the tie that ends the quota falls in this chunk
                cut = int(eq.nonzero()[quota, 0])
                eq[:cut] = False
                quota = 0
            o.logical_or_(eq)
    return outs


@ALLOCATIONS.register("global")
def allocate_global(scores: Mapping[str, torch.Tensor], mask: Mask, target: float) -> Mask:
    names = list(mask)
    layers = _layer_views(scores, mask, names)
    total = sum(layer.scores.numel() for layer in layers)
    already = total - sum(layer.alive for layer in layers)
    n_prune = max(round(target * total), already)
    keeps = _select(layers, n_prune)
    return Mask({n: keep.view_as(mask[n]).to(mask[n].device) for n, keep in zip(names, keeps)})


@ALLOCATIONS.register("layer")
def allocate_layer(scores: Mapping[str, torch.Tensor], mask: Mask, target: float) -> Mask:
    out = {}
    for n in mask:
        (layer,) = _layer_views(scores, mask, [n])
        numel = layer.scores.numel()
        n_prune = max(round(target * numel), numel - layer.alive)
        out[n] = _select([layer], n_prune)[0].view_as(mask[n]).to(mask[n].device)
    return Mask(out)


def erk_keep_counts(shapes: Mapping[str, torch.Size], alive: Mapping[str, int], keep_total: int) -> dict[str, int]:
    """Weights to keep per tensor under ERK: ``keep_l ∝ sum(shape_l)`` capped at ``alive_l``.

    ``density_l = ε · sum(shape_l) / prod(shape_l)``, so ``keep_l = ε · sum(shape_l)``;
    tensors whose share would exceed what is still alive keep all of it and ε is solved
    again for the rest (RigL's procedure). Real-valued shares are rounded by largest
    remainder (ties by position), so the counts add up to ``keep_total`` exactly.
    """
    names = list(shapes)
    weight = {n: float(sum(shapes[n])) for n in names}
    capped: set[str] = set()
    while True:
        free = [n for n in names if n not in capped]
        budget = keep_total - sum(alive[n] for n in capped)
        denom = sum(weight[n] for n in free)
        eps = budget / denom if denom else 0.0
        over = [n for n in free if eps * weight[n] > alive[n]]
        if not over:
            break
        capped.update(over)
    share = {n: float(alive[n]) if n in capped else eps * weight[n] for n in names}
    counts = {n: min(int(share[n]), alive[n]) for n in names}
    short = keep_total - sum(counts.values())
    by_remainder = sorted(names, key=lambda n: -(share[n] - int(share[n])))  # stable: ties by position
    for n in by_remainder:
        if short <= 0:
            break
        if counts[n] < alive[n]:
            counts[n] += 1
            short -= 1
    return counts


@ALLOCATIONS.register("erk")
def allocate_erk(scores: Mapping[str, torch.Tensor], mask: Mask, target: float) -> Mask:
    names = list(mask)
    layers = dict(zip(names, _layer_views(scores, mask, names)))
    total = mask.numel
    alive = {n: layers[n].alive for n in names}
    keep_total = min(round((1.0 - target) * total), sum(alive.values()))
    counts = erk_keep_counts({n: mask[n].shape for n in names}, alive, keep_total)
    out = {}
    for n in names:
        keep = _select([layers[n]], layers[n].scores.numel() - counts[n])[0]
        out[n] = keep.view_as(mask[n]).to(mask[n].device)
    return Mask(out)


def allocate(scores: Mapping[str, torch.Tensor], mask: Mask, target: float, scope: str) -> Mask:
    """Mask at ``target`` sparsity of the masked tensors, chosen by ``scope``."""
    if not 0.0 <= target < 1.0:
        raise ConfigError(f"schedule.target_sparsity={target!r} is out of range; expected a value in [0, 1)")
    return ALLOCATIONS.get(scope)(scores, mask, target)


def output_rate_target(target: float, round_rate: float, output_rate: float) -> float:
    """Cumulative sparsity of a layer pruned at ``output_rate`` per round while the others
    are at ``target`` after rounds of ``round_rate`` (Frankle & Carbin's slower output layer).

    ``k = ln(1 - target) / ln(1 - round_rate)`` rounds have passed; the output layer keeps
    ``(1 - output_rate)^k``.
    """
    if target <= 0.0:
        return 0.0
    rounds = math.log(1.0 - target) / math.log(1.0 - round_rate)
    return 1.0 - (1.0 - output_rate) ** rounds


def allocate_split(scores: Mapping[str, torch.Tensor], mask: Mask, targets: Mapping[str, float], scope: str) -> Mask:
    """Allocate groups of tensors separately: ``targets`` maps a tensor name to its own target;
    every other tensor is allocated together at ``targets[""]``."""
    own = {n for n in targets if n and n in mask}
    rest = Mask({n: m for n, m in mask.items() if n not in own})
    out = dict(allocate(scores, rest, targets[""], scope)) if len(rest) else {}
    for n in own:
        out |= dict(allocate(scores, Mask({n: mask[n]}), targets[n], scope))
    return Mask({n: out[n] for n in mask})
