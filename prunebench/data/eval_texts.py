"""Extra evaluation texts for language models: perplexity beyond the calibration domain.

A language-model data module may take ``eval_texts``: a mapping ``name -> source``. Each
text is tokenized like the data set's own splits, cut into the same blocks (``block_size``,
at most ``max_eval_blocks``), and evaluated after every level besides the test split; the
row gets ``test_loss_<name>``, ``test_ppl_<name>`` and ``test_acc_<name>``, so a claim can
be judged on any text by naming its column (``metric: test_loss_<name>``).

A source is

- ``python_docs``: the Python Language Reference topics shipped with CPython itself
  (``pydoc_data.topics``, ~465k characters of technical prose; the Python documentation is
  under the PSF License Agreement, a permissive licence): offline, no package to install,
  a genre far from Elizabethan drama;
- a path to a UTF-8 text file (``~`` expanded).

Names must be identifiers (``[A-Za-z][A-Za-z0-9_]*``): they become column names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunebench.errors import ConfigError

#: Texts known by name: name -> (loader, one-line provenance recorded in config.json)
BUILTIN = {
    "python_docs": "CPython's pydoc_data.topics (Python Language Reference topics, PSF License), sorted by topic",
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def check_eval_texts(value: Any, key: str = "data.eval_texts") -> dict[str, str]:
    """``{name: source}`` validated (names are column-safe identifiers; sources known or files)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}={value!r} must be a mapping name -> source (python_docs or a text file path)")
    out: dict[str, str] = {}
    for name, source in value.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{key} name {name!r} must be an identifier (letters, digits, _): it names columns")
        if not isinstance(source, str) or not source:
            raise ConfigError(f"{key}.{name}={source!r} must be python_docs or a path to a UTF-8 text file")
        if source not in BUILTIN and not Path(source).expanduser().is_file():
            raise ConfigError(f"{key}.{name}={source!r} is neither a known text ({', '.join(BUILTIN)}) nor an "
                              f"existing file")
        out[name] = source
    return out


def load_text(source: str) -> str:
    """The text of one source."""
    if source == "python_docs":
        import pydoc_data.topics as topics

        return "".join(topics.topics[k] for k in sorted(topics.topics))
    return Path(source).expanduser().read_text(encoding="utf-8")


def describe(source: str) -> dict[str, Any]:
    """Provenance of a source for config.json and the rows: what it is and a hash of its text."""
    text = load_text(source)
    return {"source": source, "about": BUILTIN.get(source, "text file"), "chars": len(text),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]}


def eval_columns(dm: Any, net: Any, device: Any) -> dict[str, Any]:
    """``test_loss_<name>``, ``test_ppl_<name>``, ``test_acc_<name>`` of ``net`` on each extra text of ``dm``."""
    loaders = dm.eval_dataloaders() if hasattr(dm, "eval_dataloaders") else {}
    if not loaders:
        return {}
    from prunebench.engine.module import evaluate, perplexity

    out: dict[str, Any] = {}
    for name, loader in loaders.items():
        acc, loss = evaluate(net, loader, device)
        out |= {f"test_loss_{name}": loss, f"test_ppl_{name}": perplexity(loss), f"test_acc_{name}": acc}
    return out


def provenance(dm: Any) -> dict[str, Any]:
    """What a run calibrates and evaluates on, for config.json."""
    texts = getattr(dm, "eval_texts", None) or {}
    return {"calibration": "training split of the data set (pruning.calibration_batches batches)",
            "evaluation": {"test": "the data set's test split", **{n: describe(s) for n, s in texts.items()}}}
