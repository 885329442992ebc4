"""A transformers Llama model after head surgery: its config states the pruned widths and
save_pretrained reloads, with plain transformers, into the same function (tiny random model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from prunebench.models.hf_config import layer_widths, save_pretrained, sync_config
from prunebench.pruning.structured import prune_channels

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                 reason="transformers is in the [llm] extra"),
              pytest.mark.integration]  # the dependency graph of a transformer: seconds per test


def tiny_llama(kv_heads: int = 2) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    from prunebench.models.hf import CausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=kv_heads, head_dim=8, max_position_embeddings=64,
                      tie_word_embeddings=True, attn_implementation="eager")
    return CausalLM(LlamaForCausalLM(cfg).eval()).eval()


def reload_logits(path: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    back = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        return back(input_ids=ids, use_cache=False).logits


IDS = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kv_heads", [2, 6])  # grouped-query attention (SmolLM2-like) and one kv head per head
def test_uniform_head_surgery_states_the_counts_and_reloads_into_the_same_function(tmp_path: Path,
                                                                                     kv_heads: int) -> None:
    net = tiny_llama(kv_heads)
    prune_channels(net, IDS, amount=0.34, scope="layer", criterion="l1", max_layer_amount=0.9, heads=True)
    widths = layer_widths(net.lm)
    assert all(w == widths[0] for w in widths)
    assert widths[0]["num_attention_heads"] < 6  # heads were removed
    cfg = net.lm.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.intermediate_size) == \
        (widths[0]["num_attention_heads"], widths[0]["num_key_value_heads"], 8, widths[0]["intermediate_size"])
    with torch.no_grad():
        expected = net(IDS)
    saved = save_pretrained(net, tmp_path / "m")
    assert saved is net.lm  # uniform: the model itself, not a copy
    torch.testing.assert_close(reload_logits(tmp_path / "m", IDS), expected, atol=1e-5, rtol=0)


def test_layers_of_different_widths_are_saved_padded_with_zeros_and_reload_into_the_same_function(
        tmp_path: Path) -> None:
    net = tiny_llama(2)
    from prunebench.pruning.structured.attention import head_groups, remove_heads

    groups = head_groups(net)
    remove_heads(groups[0], [1, 4])  # layer 0 loses one query head in each key/value group: 4 heads
    with torch.no_grad():  # layer 2's MLP loses hidden units 0..9
        mlp = net.lm.model.layers[2].mlp
        import torch_pruning as tp

        tp.prune_linear_out_channels(mlp.gate_proj, list(range(10)))
        tp.prune_linear_out_channels(mlp.up_proj, list(range(10)))
        tp.prune_linear_in_channels(mlp.down_proj, list(range(10)))
    assert sync_config(net) is False
    assert [w["num_attention_heads"] for w in net.lm.config.prunebench_layers] == [4, 6, 6]
    assert [w["intermediate_size"] for w in net.lm.config.prunebench_layers] == [64, 64, 54]
    with torch.no_grad():
        expected = net(IDS)
    saved = save_pretrained(net, tmp_path / "m")
    assert saved is not net.lm and layer_widths(net.lm)[0]["num_attention_heads"] == 4  # the model is untouched
    assert saved.config.num_attention_heads == 6 and saved.config.intermediate_size == 64
    torch.testing.assert_close(reload_logits(tmp_path / "m", IDS), expected, atol=1e-5, rtol=0)
