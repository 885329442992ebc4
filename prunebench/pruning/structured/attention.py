"""Attention heads as channel groups: whole heads removed, the head bookkeeping kept consistent.

Torch-Pruning's dependency graph sees a transformer's q/k/v projections as ordinary Linear
layers. Left to it, channel pruning removes different positions from q and from k (so the
surviving query and key dimensions no longer pair up), cuts across head boundaries, and
shrinks the residual stream under attention code that reads its head count from an
attribute. The forward pass still runs, and silently computes something else. So, for
every attention module an *adapter* recognises:

* the dependency graph's groups that touch its projections (q/k/v/out, on either side:
  the residual stream, the head dimensions) are left out, so its MLP hidden units are
  the transformer's only channel groups;
* its heads form one :class:`HeadGroup` (key: the attention module's name), scored per
  head by the run's criterion and allocated with the other groups;
* removing head ``h`` deletes rows ``h*d .. (h+1)*d`` of q (and of k and v when every
  query head has its own key/value head), the same columns of the output projection,
  and updates the module's head count.

Grouped-query attention (``n_kv`` key/value heads shared by ``n_q / n_kv`` query heads
each, as in Llama/SmolLM2) keeps every key/value head: a removable unit is one query-head
offset in every key/value group, so each group keeps the same number of query heads
(``ch_groups = n_kv`` blocks, as grouped convolutions in :mod:`groups`).

Two adapters ship: prunebench's own ``gpt_tiny`` attention (``n_head``) and the
Hugging Face layout (``q_proj/k_proj/v_proj/o_proj`` with ``head_dim`` and
``num_key_value_groups``: Llama, Mistral, Qwen2, SmolLM2). Register another with
:func:`register_attention` for an attention class of your own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from prunebench.errors import ConfigError


@dataclass(frozen=True)
class AttentionAdapter:
    """How to read and change one kind of attention module.

    ``projections(m)`` returns ``(q, k, v, out)`` Linears; ``head_dim(m)`` the size of one
    head; ``set_heads(m, n_q, n_kv)`` records new head counts on the module after surgery.
    """

    name: str
    match: Callable[[nn.Module], bool]
    projections: Callable[[nn.Module], tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]]
    head_dim: Callable[[nn.Module], int]
    set_heads: Callable[[nn.Module, int, int], None]


ATTENTION_ADAPTERS: list[AttentionAdapter] = []


def register_attention(adapter: AttentionAdapter) -> AttentionAdapter:
    """Teach channel pruning an attention class (checked before the built-in ones)."""
    ATTENTION_ADAPTERS.insert(0, adapter)
    return adapter


def _linears(m: nn.Module, *names: str) -> bool:
    return all(isinstance(getattr(m, n, None), nn.Linear) for n in names)


def _int_attr(m: nn.Module, name: str) -> bool:
    v = getattr(m, name, None)
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _set_gpt(m: nn.Module, n_q: int, n_kv: int) -> None:
    m.n_head = n_q


def _set_hf(m: nn.Module, n_q: int, n_kv: int) -> None:
    m.num_key_value_groups = n_q // n_kv
    for attr, value in (("num_heads", n_q), ("num_attention_heads", n_q), ("num_key_value_heads", n_kv)):
        if _int_attr(m, attr):
            setattr(m, attr, value)


ATTENTION_ADAPTERS.extend([
    # prunebench.models.gpt.CausalSelfAttention: separate q/k/v/out projections, ``n_head``.
    AttentionAdapter(
        "prunebench-gpt",
        match=lambda m: _linears(m, "q_proj", "k_proj", "v_proj", "out_proj") and _int_attr(m, "n_head"),
        projections=lambda m: (m.q_proj, m.k_proj, m.v_proj, m.out_proj),
        head_dim=lambda m: m.q_proj.out_features // m.n_head,
        set_heads=_set_gpt,
    ),
    # Hugging Face decoder attention (Llama family): shapes from ``head_dim``, key/value heads
    # repeated ``num_key_value_groups`` times.
    AttentionAdapter(
        "huggingface",
        match=lambda m: _linears(m, "q_proj", "k_proj", "v_proj", "o_proj") and _int_attr(m, "head_dim")
        and _int_attr(m, "num_key_value_groups"),
        projections=lambda m: (m.q_proj, m.k_proj, m.v_proj, m.o_proj),
        head_dim=lambda m: m.head_dim,
        set_heads=_set_hf,
    ),
])


def adapter_for(module: nn.Module) -> AttentionAdapter | None:
    return next((a for a in ATTENTION_ADAPTERS if a.match(module)), None)


@dataclass
class HeadGroup:
    """The heads of one attention module. Positions are query heads ``0 .. n_q - 1``."""

    key: str
    module: nn.Module
    adapter: AttentionAdapter
    head_dim: int
    n_q: int
    n_kv: int

    @property
    def channels(self) -> int:
        return self.n_q

    @property
    def ch_groups(self) -> int:
        """Key/value groups whose query heads must stay equal in number (1 without GQA)."""
        return self.n_kv if self.n_kv < self.n_q else 1

    @property
    def units(self) -> int:
        return self.n_q // self.ch_groups

    def projections(self) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]:
        return self.adapter.projections(self.module)

    def shared_kv(self) -> bool:
        """Key/value heads shared by several query heads (GQA): they are never removed."""
        return self.n_kv < self.n_q

    def rows(self, heads: Sequence[int]) -> list[int]:
        """Projection rows (q; k/v without GQA) and output columns of ``heads``."""
        d = self.head_dim
        return [h * d + i for h in sorted(heads) for i in range(d)]


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module, AttentionAdapter]]:
    """Every attention module an adapter recognises, in module order."""
    out = []
    for name, m in model.named_modules():
        a = adapter_for(m)
        if a is not None:
            out.append((name, m, a))
    return out


def attention_projections(model: nn.Module) -> list[nn.Module]:
    """Every q/k/v/out projection of a recognised attention module."""
    return [p for _, m, a in attention_modules(model) for p in a.projections(m)]


def head_groups(model: nn.Module, ignored: Sequence[nn.Module] = ()) -> list[HeadGroup]:
    """One group per recognised attention module with at least two removable units.

    An attention module (or any of its projections) in ``ignored`` keeps all its heads.
    Inconsistent shapes (q not a whole number of heads, key/value heads not dividing the
    query heads) are a ConfigError naming the module.
    """
    skip = {id(m) for m in ignored}
    groups = []
    for name, m, a in attention_modules(model):
        q, k, v, o = a.projections(m)
        if id(m) in skip or any(id(p) in skip for p in (q, k, v, o)):
            continue
        d = int(a.head_dim(m))
        if d <= 0 or q.out_features % d or k.out_features % d or k.out_features != v.out_features \
                or o.in_features != q.out_features:
            raise ConfigError(f"attention module {name!r} ({type(m).__name__}): projection widths q={q.out_features}, "
                              f"k={k.out_features}, v={v.out_features}, out in={o.in_features} are not whole heads of "
                              f"size {d}; keep it whole with pruning.ignored_layers=[{name!r}]")
        n_q, n_kv = q.out_features // d, k.out_features // d
        if n_q % n_kv:
            raise ConfigError(f"attention module {name!r}: {n_kv} key/value heads do not divide {n_q} query heads")
        g = HeadGroup(name, m, a, d, n_q, n_kv)
        if g.units >= 2:
            groups.append(g)
    return groups


def head_width(model: nn.Module, key: str) -> int:
    """Current number of query heads of the attention module ``key``."""
    m = model.get_submodule(key)
    a = adapter_for(m)
    if a is None:
        raise KeyError(f"{key!r} is not an attention module")
    return a.projections(m)[0].out_features // int(a.head_dim(m))


def remove_heads(group: HeadGroup, heads: Sequence[int]) -> None:
    """Physically remove query heads ``heads`` (and their own k/v heads without GQA), in place."""
    heads = sorted(set(int(h) for h in heads))
    if not heads:
        return
    if any(h < 0 or h >= group.n_q for h in heads):
        raise ValueError(f"{group.key}: head index out of range 0..{group.n_q - 1}: {heads}")
    if len(heads) >= group.n_q:
        raise ValueError(f"{group.key}: cannot remove all {group.n_q} heads")
    q, k, v, o = group.projections()
    rows = group.rows(heads)
    tp.prune_linear_out_channels(q, rows)
    n_kv = group.n_kv
    if not group.shared_kv():
        tp.prune_linear_out_channels(k, rows)
        tp.prune_linear_out_channels(v, rows)
        n_kv -= len(heads)
    tp.prune_linear_in_channels(o, rows)
    group.n_q -= len(heads)
    group.n_kv = n_kv
    group.adapter.set_heads(group.module, group.n_q, group.n_kv)


@torch.no_grad()
def zero_heads(group: HeadGroup, heads: Sequence[int]) -> None:
    """The masked counterpart of :func:`remove_heads`: the heads' value rows and output columns set to 0.

    A head whose values are zero writes zeros, and its output columns read nothing, so
    removing it afterwards must not change the model's outputs.
    """
    q, k, v, o = group.projections()
    rows = group.rows(heads)
    if not rows:
        return
    o.weight[:, rows] = 0
    if not group.shared_kv():
        v.weight[rows] = 0
        if v.bias is not None:
            v.bias[rows] = 0


def _head_slices(group: HeadGroup) -> list[tuple[torch.Tensor, bool]]:
    """(weight or bias, output-side?) tensors that removing a head deletes, for scoring."""
    q, k, v, o = group.projections()
    parts = [(q.weight, True)] + ([(q.bias, True)] if q.bias is not None else [])
    if not group.shared_kv():
        for lin in (k, v):
            parts.append((lin.weight, True))
            if lin.bias is not None:
                parts.append((lin.bias, True))
    parts.append((o.weight, False))
    return parts


def _per_head(t: torch.Tensor, out_side: bool, group: HeadGroup) -> torch.Tensor:
    """``t`` split into one flattened row per query head: ``[n_q, -1]``."""
    t = t.detach().float()
    if not out_side:
        t = t.transpose(0, 1)  # out projection: columns are the head's inputs
    return t.reshape(group.n_q, -1)


def head_norm_scores(groups: Sequence[HeadGroup], p: int) -> dict[str, torch.Tensor]:
    """Mean over the head's projections of the p-norm of its weights (as the channel filter norm)."""
    out = {}
    for g in groups:
        parts = [_per_head(t, side, g).norm(p=p, dim=1) for t, side in _head_slices(g) if t.dim() == 2]
        out[g.key] = torch.stack(parts).mean(0).cpu()
    return out


def head_taylor_scores(model: nn.Module, groups: Sequence[HeadGroup], batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                       loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """First-order Taylor scores per head: mean over batches of ``(sum over its weights of w * dL/dw)^2``."""
    items = [(g, t, side) for g in groups for t, side in _head_slices(g) if isinstance(t, nn.Parameter) and t.requires_grad]
    params = list({id(t): t for _, t, _ in items}.values())
    index = {id(p): i for i, p in enumerate(params)}
    scores = {g.key: torch.zeros(g.n_q) for g in groups}
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            with torch.enable_grad():
                grads = torch.autograd.grad(loss_fn(model(x), y), params, allow_unused=True)
            contrib = {g.key: torch.zeros(g.n_q) for g in groups}
            for g, t, side in items:
                grad = grads[index[id(t)]]
                if grad is None:
                    continue
                prod = (t.detach() * grad).float()
                contrib[g.key] += (prod.reshape(g.n_q, -1) if side else prod.transpose(0, 1).reshape(g.n_q, -1)).sum(1).cpu()
            for k, c in contrib.items():
                scores[k] += c.pow(2)
    finally:
        model.train(was_training)
    n = max(len(batches), 1)
    return {k: s / n for k, s in scores.items()}


def head_scores(criterion: str, model: nn.Module, groups: Sequence[HeadGroup], *,
                batches: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Per-query-head scores (higher = keep) for the built-in channel criteria.

    ``bn_scale`` has nothing to say about attention (no BatchNorm): every head scores
    ``+inf`` and is kept, as a channel group without BatchNorm is. A criterion registered
    by a user has no head rule: ConfigError, with the key that keeps heads whole.
    """
    if not groups:
        return {}
    if criterion in ("l1", "l2"):
        return head_norm_scores(groups, 1 if criterion == "l1" else 2)
    if criterion == "random":
        return {g.key: torch.rand(g.n_q, generator=generator) for g in groups}
    if criterion == "bn_scale":
        return {g.key: torch.full((g.n_q,), float("inf")) for g in groups}
    if criterion == "taylor":
        if loss_fn is None:
            raise ValueError("taylor head scores need a loss function")
        return head_taylor_scores(model, groups, batches, loss_fn)
    raise ConfigError(f"pruning.method={criterion!r} has no rule for attention heads; use l1, l2, taylor or random, "
                      f"or keep heads whole with pruning.heads=false")
