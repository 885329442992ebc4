"""Results: run identity, run folders and the results table."""

from prunebench.results.schema import COLUMNS, OPTIONAL, REQUIRED, coerce
from prunebench.results.store import load

__all__ = ["COLUMNS", "OPTIONAL", "REQUIRED", "coerce", "load"]
