"""Results: run identity, run folders and the results table."""

from prunebench.results.schema import COLUMNS, OPTIONAL, REQUIRED, coerce
from prunebench.results.store import Collected, collect, load
from prunebench.results.validate import ResultsError

__all__ = ["COLUMNS", "OPTIONAL", "REQUIRED", "Collected", "ResultsError", "coerce", "collect", "load"]
