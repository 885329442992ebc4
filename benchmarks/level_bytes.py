"""Bytes on disk per level, old format (1) against compact levels (2), for SmolLM2-135M's shapes.

Builds a model with SmolLM2-135M's architecture (transformers ``LlamaConfig``: hidden 576,
intermediate 1536, 30 layers, 9 query / 3 key-value heads, vocabulary 49152, tied
embeddings; random weights: file sizes do not depend on the values) and writes, with
prunebench's own level writer, the files one run of ``lm_smollm2_oneshot`` writes:
the dense cache (``final.pt``), level 0 (the dense model, linked to the cache) and level 1,
for the two kinds of level that study has:

* ``mask_only``: magnitude / Wanda / OWL at 50-70% and 2:4 (8 of its 11 runs): the level's
  weights are the dense weights times the mask;
* ``sparsegpt``: SparseGPT at 50%, 60%, 2:4 (3 runs): the surviving weights are changed.

Format 1 is written as prunebench wrote it before (full ``state.pt`` and one byte per weight
in ``mask.pt``; level 0 linked to the cache). The per-seed total is extrapolated from these
per-run figures: cache + 8 x mask_only + 3 x sparsegpt. Counting is per inode (hard links
once), as ``du`` does.

    python benchmarks/level_bytes.py
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pandas as pd
import torch

from prunebench.pruning.mask import Mask
from prunebench.results.levels import load_level_state, same_bits, save_level
from prunebench.results.store import atomic_link, atomic_write_bytes, disk_bytes

MB = 1e6


def smollm2_shaped() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, head_dim=64, tie_word_embeddings=True)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def prunable(model: torch.nn.Module) -> list[str]:
    """Decoder Linear weights (the study: prune_output=false, embeddings not prunable)."""
    return [n for n, p in model.named_parameters() if p.dim() == 2 and ".layers." in n]


def old_level(ld: Path, state: dict[str, torch.Tensor], mask: Mask, link: Path | None) -> None:
    ld.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({n: m for n, m in mask.items()}, buf)  # one bool (byte) per weight
    atomic_write_bytes(ld / "mask.pt", buf.getvalue())
    if link is None or not atomic_link(link, ld / "state.pt"):
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(ld / "state.pt", buf.getvalue())


def main() -> None:
    model = smollm2_shaped()
    dense = {k: v.detach() for k, v in model.state_dict().items()}  # tied embedding/head: one storage
    names = prunable(model)
    n_prunable = sum(dense[n].numel() for n in names)
    keep = {n: dense[n].abs() > dense[n].abs().flatten().kthvalue(dense[n].numel() // 2).values for n in names}
    mask, ones = Mask(keep), Mask.ones_like(model, names)
    pruned = {k: (v * keep[k] if k in keep else v) for k, v in dense.items()}
    changed = {k: ((v + 1e-3) * keep[k] if k in keep else v) for k, v in pruned.items()}  # survivors moved
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "cache" / "final.pt"
        cache.parent.mkdir(parents=True)
        buf = io.BytesIO()
        torch.save(dense, buf)
        atomic_write_bytes(cache, buf.getvalue())
        cache_bytes = cache.stat().st_size
        for kind, state in (("mask_only", pruned), ("sparsegpt", changed)):
            for fmt in (1, 2):
                run = root / f"{kind}_{fmt}"
                seen = {(cache.stat().st_dev, cache.stat().st_ino)}
                if fmt == 1:
                    old_level(run / "0", dense, ones, cache)
                    old_level(run / "1", state, mask, None)
                else:
                    save_level(run / "0", dense, ones, link_from=cache)
                    save_level(run / "1", state, mask, base=0, base_state=load_level_state(run / "0")[0])
                    back, back_mask = load_level_state(run / "1")
                    assert back_mask == mask and all(same_bits(back[k], state[k]) for k in state), "not bit-identical"
                rows.append({"kind": kind, "format": fmt, "level0_MB": disk_bytes(run / "0", seen) / MB,
                             "level1_MB": disk_bytes(run / "1", seen) / MB})
    table = pd.DataFrame(rows)
    table["run_MB"] = table["level0_MB"] + table["level1_MB"]
    print(f"SmolLM2-135M shapes: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"{n_prunable / 1e6:.1f}M prunable; dense cache {cache_bytes / MB:.0f} MB")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    per = table.set_index(["kind", "format"])["run_MB"]
    for fmt in (1, 2):
        total = cache_bytes / MB + 8 * per[("mask_only", fmt)] + 3 * per[("sparsegpt", fmt)]
        print(f"format {fmt}: one seed of lm_smollm2_oneshot (cache + 8 mask-only + 3 SparseGPT runs), "
              f"extrapolated: {total / 1e3:.2f} GB")


if __name__ == "__main__":
    main()
