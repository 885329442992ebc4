"""Tiny GPT on Shakespeare (characters): one-shot magnitude / Wanda / SparseGPT side by side.

Trains ``gpt_tiny`` (default 2x64) for ``--steps`` Adam steps per seed, then prunes copies of
the dense model's decoder Linear layers one-shot (no retraining) at each sparsity and prints
validation perplexity (mean ± std over seeds) per method (see METHODS: the comparison group,
per layer or per output row, is varied apart from the score). The LM head, embeddings and
LayerNorms stay dense. Calibration: 8 batches of 32 training blocks of 64 characters.

Usage: python benchmarks/lm_tiny_oneshot.py [--steps 800] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from prunebench.data import build_datamodule
from prunebench.engine.module import evaluate, perplexity, token_loss
from prunebench.models import build_model
from prunebench.pruning import sparsegpt
from prunebench.pruning.scopes import allocate
from prunebench.pruning.criteria import ScoreContext, get_criterion
from prunebench.pruning.criteria.wanda import prune_sequential
from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import prunable_weights


#: magnitude: |W| per layer; magnitude_row: |W| per output row; wanda: |W|·‖X‖ per row,
#: sequential (official); wanda_layer: |W|·‖X‖ from the dense model, per layer; sparsegpt.
METHODS = ("magnitude", "magnitude_row", "wanda", "wanda_layer", "sparsegpt")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res: dict[tuple[str, float], list[float]] = {}
    for seed in args.seeds:
        torch.manual_seed(seed)
        dm = build_datamodule("shakespeare", seed=seed, batch_size=32, block_size=64, max_eval_blocks=400)
        dm.setup()
        net = build_model("gpt_tiny", dm.input_shape, dm.num_classes)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        it = iter(dm.train_dataloader())
        for _ in range(args.steps):
            x, y = next(it)
            loss = token_loss(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        _, dense_loss = evaluate(net, dm.val_dataloader())
        res.setdefault(("dense", 0.0), []).append(perplexity(dense_loss))
        print(f"seed {seed}: dense val ppl {perplexity(dense_loss):.2f} after {args.steps} steps "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        batches = dm.calibration_batches(8)
        targets = prunable_weights(net, prune_output=False)
        ones = Mask.ones_like(net, [t.param_name for t in targets])
        for s in args.sparsities:
            for method in METHODS:
                pruned = copy.deepcopy(net)
                params = dict(pruned.named_parameters())
                if method in ("magnitude", "magnitude_row"):
                    scope = "layer" if method == "magnitude" else "row"
                    allocate({n: params[n].abs() for n in ones}, ones, s, scope).apply(pruned)
                elif method == "wanda_layer":
                    ctx = ScoreContext(mask=ones, batches=batches)
                    allocate(get_criterion("wanda").fn(pruned, targets, ctx), ones, s, "layer").apply(pruned)
                elif method == "wanda":
                    prune_sequential(pruned, targets, batches, s)
                else:
                    sparsegpt.prune(pruned, targets, batches, s)
                _, loss = evaluate(pruned, dm.val_dataloader())
                res.setdefault((method, s), []).append(perplexity(loss))
    print(f"\n{'sparsity':>8} " + " ".join(f"{m:>18}" for m in METHODS))
    dense = res[("dense", 0.0)]
    print(f"{'dense':>8} {statistics.mean(dense):>18.2f}")
    for s in args.sparsities:
        cells = []
        for m in METHODS:
            v = res[(m, s)]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):>11.2f} ± {sd:<4.2f}")
        print(f"{s:>8.0%} " + " ".join(cells))
    print(f"(val perplexity per character, {len(args.seeds)} seed(s); total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
