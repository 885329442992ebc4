"""Channel pruning of transformers: whole attention heads and MLP hidden units, the residual
stream untouched, head counts kept consistent through surgery and save/load."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from prunebench.errors import ConfigError
from prunebench.models import build_model
from prunebench.pruning.structured import (
    StructuredBaseline,
    build_graph,
    channel_groups,
    load_pruned,
    prune_channels,
    save_pruned,
    select_channels,
    zero_channels,
)
from prunebench.pruning.structured.attention import (
    ATTENTION_ADAPTERS,
    AttentionAdapter,
    head_groups,
    head_scores,
    register_attention,
)
from prunebench.pruning.structured.groups import default_ignored

VOCAB, T = 23, 16


def gpt(seed: int = 0, **kw: int) -> nn.Module:
    torch.manual_seed(seed)
    net = build_model("gpt_tiny", (T,), VOCAB, **{"n_layer": 2, "n_head": 4, "d_model": 32, **kw})
    with torch.no_grad():  # break the symmetric init so heads and units score differently
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def tokens(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, T), generator=torch.Generator().manual_seed(seed))


class GQAttention(nn.Module):
    """Llama-style grouped-query attention in the Hugging Face layout (no transformers needed)."""

    def __init__(self, d_model: int, n_q: int, n_kv: int) -> None:
        super().__init__()
        self.head_dim = d_model // n_q
        self.num_key_value_groups = n_q // n_kv
        self.q_proj = nn.Linear(d_model, n_q * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_q * self.head_dim, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        q = self.q_proj(x).view(B, L, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, L, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, L, -1, self.head_dim).transpose(1, 2)
        k = k.repeat_interleave(self.num_key_value_groups, dim=1)
        v = v.repeat_interleave(self.num_key_value_groups, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, L, -1))


class TinyLlama(nn.Module):
    def __init__(self, seed: int = 0, d: int = 32, n_q: int = 8, n_kv: int = 2) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(VOCAB, d)
        self.norm1 = nn.LayerNorm(d)
        self.attn = GQAttention(d, n_q, n_kv)
        self.norm2 = nn.LayerNorm(d)
        self.gate_proj, self.up_proj, self.down_proj = nn.Linear(d, 48), nn.Linear(d, 48), nn.Linear(48, d)
        self.head = nn.Linear(d, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        x = x + self.attn(self.norm1(x))
        h = self.norm2(x)
        x = x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))
        return self.head(x)


# ---- groups ---------------------------------------------------------------------------------

def test_gpt_groups_are_heads_and_mlp_units_never_the_residual_stream() -> None:
    net, x = gpt(), tokens()
    groups = channel_groups(net, build_graph(net, x), default_ignored(net, None, x))
    assert [g.key for g in groups] == ["blocks.0.fc_in", "blocks.1.fc_in"]  # q/k/v and the residual are not groups
    heads = head_groups(net)
    assert [(h.key, h.n_q, h.n_kv, h.head_dim, h.units, h.ch_groups) for h in heads] == [
        ("blocks.0.attn", 4, 4, 8, 4, 1), ("blocks.1.attn", 4, 4, 8, 4, 1)]
    base = StructuredBaseline.measure(net, x)
    assert base.group_channels == {"blocks.0.fc_in": 128, "blocks.1.fc_in": 128, "blocks.0.attn": 4, "blocks.1.attn": 4}
    assert set(StructuredBaseline.measure(net, x, heads=False).group_channels) == {"blocks.0.fc_in", "blocks.1.fc_in"}


# ---- surgery --------------------------------------------------------------------------------

def test_removing_heads_equals_zeroing_their_values_and_keeps_the_residual_width() -> None:
    net, x = gpt(), tokens()
    original = copy.deepcopy(net)
    masked = copy.deepcopy(net)
    sel = select_channels(masked, x, amount=0.5)
    assert {k: len(v) for k, v in sel.plan.items()} == {"blocks.0.fc_in": 64, "blocks.1.fc_in": 64,
                                                       "blocks.0.attn": 2, "blocks.1.attn": 2}
    zero_channels(sel)
    res = prune_channels(net, x, amount=0.5)
    for blk in net.blocks:
        a = blk.attn
        assert a.n_head == 2
        assert (a.q_proj.out_features, a.k_proj.out_features, a.v_proj.out_features, a.out_proj.in_features) == (16,) * 4
        assert (a.q_proj.in_features, a.out_proj.out_features, blk.fc_out.out_features) == (32, 32, 32)
        assert blk.fc_in.out_features == 64 and blk.fc_out.in_features == 64
    assert net.tok_emb.embedding_dim == 32 and net.ln_f.normalized_shape == (32,)
    assert res.channel_ratio == pytest.approx(0.5)
    assert res.group_channels == {"blocks.0.fc_in": 64, "blocks.1.fc_in": 64, "blocks.0.attn": 2, "blocks.1.attn": 2}
    with torch.no_grad():
        out = net(x)
        assert torch.allclose(out, masked(x), atol=1e-5)
        assert (out - original(x)).abs().max() > 1e-3  # the pruned model is not the dense one
    # The heads removed are the lowest-L1 ones: the survivors' q rows are the dense rows of the kept heads.
    kept = [h for h in range(4) if h not in sel.plan["blocks.0.attn"]]
    rows = torch.cat([original.blocks[0].attn.q_proj.weight[h * 8:(h + 1) * 8] for h in kept])
    assert torch.equal(net.blocks[0].attn.q_proj.weight, rows)


def test_pruned_transformer_saves_and_loads_with_its_head_counts(tmp_path: Path) -> None:
    net, x = gpt(), tokens()
    prune_channels(net, x, amount=0.5, scope="global")
    path = save_pruned(net, tmp_path / "gpt.pt")
    again = load_pruned(path, lambda: gpt(seed=5)).eval()
    assert [b.attn.n_head for b in again.blocks] == [b.attn.n_head for b in net.blocks]
    with torch.no_grad():
        assert torch.equal(again(x), net(x))


def test_heads_false_and_ignored_attention_keep_heads() -> None:
    x = tokens()
    net = gpt()
    prune_channels(net, x, amount=0.5, heads=False)
    assert [b.attn.n_head for b in net.blocks] == [4, 4] and [b.fc_in.out_features for b in net.blocks] == [64, 64]
    net = gpt()
    prune_channels(net, x, amount=0.5, ignored_layers=["blocks.0.attn"])
    assert [b.attn.n_head for b in net.blocks] == [4, 2]


def test_iterative_levels_count_heads_against_the_dense_model() -> None:
    net, x = gpt(), tokens()
    base = StructuredBaseline.measure(net, x)
    prune_channels(net, x, amount=0.25, baseline=base)
    assert [b.attn.n_head for b in net.blocks] == [3, 3]
    res = prune_channels(net, x, amount=0.5, baseline=base)
    assert [b.attn.n_head for b in net.blocks] == [2, 2] and res.channel_ratio == pytest.approx(0.5)
    prune_channels(net, x, amount=0.95, baseline=base)  # the cap keeps at least one head
    assert [b.attn.n_head for b in net.blocks] == [1, 1]
    with torch.no_grad():
        assert net(x).shape == (3, T, VOCAB)


def test_grouped_query_attention_keeps_key_value_heads_and_equal_groups() -> None:
    net, x = TinyLlama().eval(), tokens()
    (h,) = head_groups(net)
    assert (h.n_q, h.n_kv, h.ch_groups, h.units) == (8, 2, 2, 4)
    masked = copy.deepcopy(net)
    sel = select_channels(masked, x, amount=0.5)
    removed = sel.plan["attn"]
    # One unit = the same query-head offset in both key/value groups (heads 0-3 share kv 0, 4-7 kv 1).
    assert len(removed) == 4 and sorted(r % 4 for r in removed[:2]) == sorted(r % 4 for r in removed[2:])
    zero_channels(sel)
    prune_channels(net, x, amount=0.5)
    a = net.attn
    assert (a.q_proj.out_features, a.k_proj.out_features, a.v_proj.out_features, a.o_proj.in_features) == (16, 8, 8, 16)
    assert a.num_key_value_groups == 2
    assert net.gate_proj.out_features == 24 and net.up_proj.out_features == 24 and net.down_proj.in_features == 24
    with torch.no_grad():
        assert torch.allclose(net(x), masked(x), atol=1e-5)


def test_taylor_and_random_heads_on_a_language_model() -> None:
    net, x = gpt(), tokens(4)
    y = torch.randint(0, VOCAB, (4, T), generator=torch.Generator().manual_seed(3))
    heads = head_groups(net)
    from prunebench.pruning.structured.criteria import token_cross_entropy

    taylor = head_scores("taylor", net, heads, batches=[(x, y)], loss_fn=token_cross_entropy)
    assert {k: v.shape for k, v in taylor.items()} == {"blocks.0.attn": (4,), "blocks.1.attn": (4,)}
    assert all(torch.isfinite(v).all() and (v > 0).all() for v in taylor.values())
    # Taylor by hand for head 1 of block 0: (sum over its q/k/v rows and out columns of w * dL/dw)^2.
    a = net.blocks[0].attn
    params = [a.q_proj.weight, a.q_proj.bias, a.k_proj.weight, a.k_proj.bias, a.v_proj.weight, a.v_proj.bias,
              a.out_proj.weight]
    grads = torch.autograd.grad(token_cross_entropy(net(x), y), params)
    rows = slice(8, 16)
    total = sum((p[rows] * g[rows]).sum() for p, g in zip(params[:6], grads[:6])) \
        + (params[6][:, rows] * grads[6][:, rows]).sum()
    assert taylor["blocks.0.attn"][1] == pytest.approx(float(total) ** 2, rel=1e-4)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    n1, n2 = gpt(), gpt()
    prune_channels(n1, x, amount=0.5, criterion="random", generator=g1)
    prune_channels(n2, x, amount=0.5, criterion="random", generator=g2)
    assert torch.equal(n1.blocks[0].attn.q_proj.weight, n2.blocks[0].attn.q_proj.weight)
    prune_channels(net, x, amount=0.5, criterion="taylor", batches=[(x, y)])
    assert [b.attn.n_head for b in net.blocks] == [2, 2]


def test_an_attention_class_of_your_own_is_registered_and_a_bad_one_refused() -> None:
    class MyAttention(GQAttention):
        pass

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.emb = nn.Embedding(VOCAB, 16)
            self.mix = MyAttention(16, 4, 4)
            self.mix.wq = self.mix.q_proj  # named differently from any built-in layout
            self.head = nn.Linear(16, VOCAB)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.head(self.mix(self.emb(idx)))

    net, x = Net().eval(), tokens()
    assert [h.key for h in head_groups(net)] == ["mix"]  # matched by the built-in Hugging Face layout
    adapter = register_attention(AttentionAdapter(
        "mine", match=lambda m: isinstance(m, MyAttention),
        projections=lambda m: (m.wq, m.k_proj, m.v_proj, m.o_proj), head_dim=lambda m: 3,
        set_heads=lambda m, q, kv: None))
    try:
        with pytest.raises(ConfigError, match=r"attention module 'mix' \(MyAttention\): projection widths q=16, k=16, "
                                              r"v=16, out in=16 are not whole heads of size 3; keep it whole with "
                                              r"pruning.ignored_layers=\['mix'\]"):
            head_groups(net)
    finally:
        ATTENTION_ADAPTERS.remove(adapter)


def test_a_criterion_without_a_head_rule_is_a_clear_error() -> None:
    from prunebench import catalog
    from prunebench.pruning.structured.criteria import CHANNEL_CRITERIA, register_channel_criterion

    catalog.CHANNEL_CRITERIA.add("ones_for_test")  # a plugin names itself in the catalog first
    register_channel_criterion("ones_for_test")(lambda model, groups, ctx: {g.key: torch.ones(g.channels) for g in groups})
    try:
        with pytest.raises(ConfigError, match="pruning.method='ones_for_test' has no rule for attention heads; .* "
                                              "pruning.heads=false"):
            prune_channels(gpt(), tokens(), amount=0.5, criterion="ones_for_test")
        prune_channels(gpt(), tokens(), amount=0.5, criterion="ones_for_test", heads=False)
    finally:
        CHANNEL_CRITERIA._entries.pop("ones_for_test", None)
        catalog.CHANNEL_CRITERIA._entries.pop("ones_for_test", None)


# ---- through the level loop -------------------------------------------------------------------

@pytest.mark.integration
def test_a_gpt_run_loses_heads_and_units_and_is_found_again(tmp_path: Path) -> None:
    import pandas as pd

    from prunebench.cli import main
    from prunebench.results.store import read_rows

    args = ["model=gpt_tiny", "data=shakespeare", "pruning=channel", "pruning.target=channels", "schedule=one_shot",
            "schedule.target_sparsity=0.5", "retrain=none", "train.epochs=1", "train.max_steps=30",
            "data.max_eval_blocks=20", "metrics.latency=false", "trainer=cpu", "trainer.threads=1",
            "trainer.progress=false", "report=false", f"paths.root={tmp_path}"]
    main(args)  # exits non-zero (SystemExit) on any failure
    (run,) = (tmp_path / "runs").iterdir()
    rows = read_rows(run)
    final = rows.iloc[-1]
    assert (final["structure"], final["task"]) == ("channel", "language_modeling")
    assert final["channel_ratio"] == pytest.approx(0.5) and 0.3 < final["sparsity"] < 0.6
    assert final["speedup_theoretical"] > 1.5 and final["val_ppl"] > 1
    layers = pd.read_csv(run / "levels" / "1" / "layers.csv").set_index("layer")
    assert layers.loc["blocks.0.attn", "heads"] == 2 and layers.loc["blocks.1.attn", "heads"] == 2
    assert layers.loc["blocks.0.attn.q_proj", "channels"] == 32 and layers.loc["blocks.0.attn.out_proj", "channels"] == 64
    assert layers.loc["blocks.0.fc_in", "channels"] == 128  # 256 hidden units, half removed
    main(args)  # found finished: the saved pruned model loads and reproduces the rows
    pd.testing.assert_frame_equal(read_rows(run), rows)
