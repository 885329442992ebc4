"""The one logger of prunebench's command-line tools: a line on standard error, flushed.

Library functions take a ``log`` callable defaulting to :func:`log`, so notebooks and the
Python API can pass their own (or ``lambda msg: None``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Logger = Callable[[str], None]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def quiet(msg: str) -> None:
    """A logger that drops everything."""
