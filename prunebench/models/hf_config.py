"""A Hugging Face model's ``config`` after head and MLP surgery, and ``save_pretrained`` that reloads.

Channel pruning removes attention heads and MLP hidden units from a transformers model in
place (:mod:`prunebench.pruning.structured.attention`). transformers rebuilds a model
from its ``config`` (``num_attention_heads``, ``num_key_value_heads``, ``head_dim``,
``intermediate_size``), so after surgery the config must state the new widths, or
``from_pretrained`` builds the dense shapes and fails to load the weights.

transformers' Llama family config (Llama, Mistral, Qwen2, SmolLM2; checked on 5.25) holds
ONE value of each for every layer: there is no per-layer head count. So:

* every layer the same widths (``pruning.scope=layer`` with equal amounts, or a model
  whose layers happened to lose the same): :func:`sync_config` writes them into the
  config, and the model's own ``save_pretrained`` reloads into the same function;
* layers of different widths (global channel pruning): not representable. The config then
  keeps the uniform fields as they were and records the per-layer widths under
  ``prunebench_layers`` (a plain list, saved in config.json); the model's own
  ``save_pretrained`` would not reload (transformers reports the shape mismatch).
  :func:`save_pretrained` here writes a copy padded with zero heads and zero hidden units
  up to the widest layer: the same function (a zero query/output head and a zero
  gate/up/down unit add exactly 0), loadable by plain transformers, but as large on disk
  as the widest layer makes it.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn

FIELDS = ("num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size")


def hf_models(model: nn.Module) -> list[nn.Module]:
    """The outermost transformers models inside ``model`` (modules with a config and save_pretrained)."""
    found: list[tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        cfg = getattr(m, "config", None)
        if cfg is None or not hasattr(m, "save_pretrained") or not hasattr(cfg, "num_attention_heads"):
            continue
        if any(name.startswith(f"{outer}.") or outer == "" for outer, _ in found):
            continue
        found.append((name, m))
    return [m for _, m in found]


def _attention(m: nn.Module) -> bool:
    return all(isinstance(getattr(m, p, None), nn.Linear) for p in ("q_proj", "k_proj", "v_proj", "o_proj")) \
        and isinstance(getattr(m, "head_dim", None), int)


def _mlp(m: nn.Module) -> bool:
    return all(isinstance(getattr(m, p, None), nn.Linear) for p in ("gate_proj", "up_proj", "down_proj"))


def layer_widths(hf: nn.Module) -> list[dict[str, int]]:
    """Per decoder layer (in order): query heads, key/value heads, head size, MLP hidden units."""
    attn = [m for m in hf.modules() if _attention(m)]
    mlps = [m for m in hf.modules() if _mlp(m)]
    out = []
    for i, a in enumerate(attn):
        hd = int(a.head_dim)
        row = {"num_attention_heads": a.q_proj.out_features // hd, "num_key_value_heads": a.k_proj.out_features // hd,
               "head_dim": hd}
        if i < len(mlps):
            row["intermediate_size"] = mlps[i].up_proj.out_features
        out.append(row)
    return out


def sync_config(model: nn.Module) -> bool:
    """Write the pruned widths into every transformers model's config in ``model``; False if a
    model's layers differ (see the module docstring: then ``config.prunebench_layers`` says how)."""
    uniform = True
    for hf in hf_models(model):
        widths = layer_widths(hf)
        if not widths:
            continue
        cfg = hf.config
        same = all(w == widths[0] for w in widths)
        if same:
            for k, v in widths[0].items():
                setattr(cfg, k, v)
            if hasattr(cfg, "prunebench_layers"):
                delattr(cfg, "prunebench_layers")
        else:
            cfg.prunebench_layers = widths
            uniform = False
    return uniform


@torch.no_grad()
def _pad_rows(lin: nn.Linear, blocks: int, old: int, new: int) -> None:
    """Grow ``lin``'s output rows from ``blocks`` blocks of ``old`` rows to blocks of ``new`` (zeros appended per block)."""
    w = lin.weight.data
    cols = w.shape[1]
    out = torch.zeros(blocks, new, cols, dtype=w.dtype, device=w.device)
    out[:, :old] = w.reshape(blocks, old, cols)
    lin.weight = nn.Parameter(out.reshape(blocks * new, cols), requires_grad=lin.weight.requires_grad)
    if lin.bias is not None:
        b = torch.zeros(blocks, new, dtype=lin.bias.dtype, device=lin.bias.device)
        b[:, :old] = lin.bias.data.reshape(blocks, old)
        lin.bias = nn.Parameter(b.reshape(-1), requires_grad=lin.bias.requires_grad)
    lin.out_features = blocks * new


@torch.no_grad()
def _pad_cols(lin: nn.Linear, blocks: int, old: int, new: int) -> None:
    w = lin.weight.data
    rows = w.shape[0]
    out = torch.zeros(rows, blocks, new, dtype=w.dtype, device=w.device)
    out[:, :, :old] = w.reshape(rows, blocks, old)
    lin.weight = nn.Parameter(out.reshape(rows, blocks * new), requires_grad=lin.weight.requires_grad)
    lin.in_features = blocks * new


def pad_to_uniform(hf: nn.Module) -> nn.Module:
    """A copy of the transformers model ``hf`` whose layers all have the widest layer's widths,
    the added heads and hidden units all zeros (the same function); its config states them."""
    hf = copy.deepcopy(hf)
    attn = [m for m in hf.modules() if _attention(m)]
    mlps = [m for m in hf.modules() if _mlp(m)]
    widths = layer_widths(hf)
    n_q = max(w["num_attention_heads"] for w in widths)
    n_kv = max(w["num_key_value_heads"] for w in widths)
    for a, w in zip(attn, widths, strict=False):
        hd, q, kv = w["head_dim"], w["num_attention_heads"], w["num_key_value_heads"]
        if kv == n_kv:  # grouped-query attention keeps its key/value heads: pad each group's query heads
            if n_q % n_kv:
                raise ValueError(f"cannot pad {n_q} query heads into {n_kv} key/value groups")
            _pad_rows(a.q_proj, kv, q // kv * hd, n_q // n_kv * hd)
            _pad_cols(a.o_proj, kv, q // kv * hd, n_q // n_kv * hd)
        elif q == kv and n_q == n_kv:  # one key/value head per query head: pad all four
            for lin in (a.q_proj, a.k_proj, a.v_proj):
                _pad_rows(lin, 1, q * hd, n_q * hd)
            _pad_cols(a.o_proj, 1, q * hd, n_q * hd)
        else:
            raise ValueError(f"layers with {q}/{kv} and {n_q}/{n_kv} query/key-value heads cannot be padded to "
                             f"one config")
        a.num_key_value_groups = n_q // n_kv
        for attr, value in (("num_heads", n_q), ("num_attention_heads", n_q), ("num_key_value_heads", n_kv)):
            if isinstance(getattr(a, attr, None), int):
                setattr(a, attr, value)
    if mlps:
        inter = max(m.up_proj.out_features for m in mlps)
        for m in mlps:
            old = m.up_proj.out_features
            _pad_rows(m.gate_proj, 1, old, inter)
            _pad_rows(m.up_proj, 1, old, inter)
            _pad_cols(m.down_proj, 1, old, inter)
    if not sync_config(hf):
        raise AssertionError("padding left layers of different widths")
    return hf


def save_pretrained(model: nn.Module, path: str | os.PathLike[str], **kwargs: Any) -> nn.Module:
    """``save_pretrained`` of the transformers model in ``model`` (pruned or not), reloadable with
    plain transformers into the same function; returns the model that was saved (a padded copy
    when the layers' widths differ, see the module docstring)."""
    models = hf_models(model)
    if len(models) != 1:
        raise ValueError(f"expected one transformers model inside {type(model).__name__}, found {len(models)}")
    hf = models[0]
    out = hf if sync_config(hf) else pad_to_uniform(hf)
    out.save_pretrained(path, **kwargs)
    return out
