"""``gpt_tiny``: a small decoder-only transformer (GPT-2 layout, pre-norm) for token data.

Every projection is an ``nn.Linear`` called as a module (query/key/value, attention output,
MLP up and down, LM head), so masks, Wanda/SparseGPT calibration hooks and the channel
pruner see them; attention itself is ``F.scaled_dot_product_attention`` (no weights).
Embeddings (token and position) and LayerNorms are not Linear, so they are never pruned;
the LM head is the last ``nn.Linear`` (``pruning.prune_output=false`` keeps it dense) and
is not tied to the token embedding, so pruning it would not touch the embedding.

Inputs are token ids ``[B, T]`` (``input_shape = (block_size,)``), outputs logits
``[B, T, num_classes]`` (``num_classes`` = vocabulary size).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prunebench.errors import ConfigError
from prunebench.models.base import Accepts, check_positive_int, register_model


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        # Separate q/k/v Linears (not one fused qkv) so each can be pruned and reported on its own.
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        h = self.n_head
        # Head size from the projections, not the residual width: channel pruning removes
        # whole heads (prunebench.pruning.structured.attention) and lowers n_head.
        d = self.q_proj.out_features // h

        def heads(t: Tensor) -> Tensor:
            return t.view(B, T, h, d).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)),
                                           is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, h * d))


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc_in = nn.Linear(d_model, mlp_ratio * d_model)
        self.act = nn.GELU()
        self.fc_out = nn.Linear(mlp_ratio * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.fc_out(self.act(self.fc_in(self.ln2(x)))))


class GPT(nn.Module):
    """Token + position embeddings → ``n_layer`` pre-norm blocks → LayerNorm → LM head."""

    def __init__(self, vocab_size: int, block_size: int, *, n_layer: int, n_head: int, d_model: int,
                 mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList([Block(d_model, n_head, mlp_ratio, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.apply(self._init)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer) keep the stream's variance flat.
        for name, p in self.named_parameters():
            if name.endswith(("out_proj.weight", "fc_out.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.shape[-1]
        if T > self.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size={self.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.tok_emb(idx.long()) + self.pos_emb(pos)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


@register_model("gpt_tiny", accepts=Accepts("sequence", min_size=1))
def gpt_tiny(input_shape: tuple[int, ...], num_classes: int, *, n_layer: int = 2, n_head: int = 4,
             d_model: int = 64, mlp_ratio: int = 4, dropout: float = 0.0) -> nn.Module:
    """Decoder-only transformer over ``input_shape = (block_size,)`` token ids; ``num_classes`` = vocabulary."""
    if len(input_shape) != 1:
        raise ConfigError(f"model=gpt_tiny needs token-id inputs of shape (block_size,); got input_shape={input_shape}")
    n_layer = check_positive_int("n_layer", n_layer)
    n_head = check_positive_int("n_head", n_head)
    d_model = check_positive_int("d_model", d_model)
    mlp_ratio = check_positive_int("mlp_ratio", mlp_ratio)
    if d_model % n_head:
        raise ConfigError(f"model.d_model={d_model} must be a multiple of model.n_head={n_head}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout={dropout!r} must be a number in [0, 1)")
    return GPT(num_classes, input_shape[0], n_layer=n_layer, n_head=n_head, d_model=d_model,
               mlp_ratio=mlp_ratio, dropout=float(dropout))


gpt_tiny.task = "language_modeling"  # type: ignore[attr-defined]  # read by prunebench.models.model_task
