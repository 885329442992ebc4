"""Figure formats of the report: a leaf module, so the config check needs neither matplotlib
nor pandas (``prunebench.spec`` validates ``report_formats`` before anything heavy loads)."""

from __future__ import annotations

from collections.abc import Sequence

from prunebench.errors import ConfigError

#: Formats :func:`prunebench.plots.save_figure` writes.
FIGURE_FORMATS = ("png", "pdf", "svg")


def check_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    """The figure formats as a tuple, PNG first; ConfigError naming the bad one."""
    items = [formats] if isinstance(formats, str) else list(formats)
    bad = [f for f in items if f not in FIGURE_FORMATS]
    if bad or not items:
        raise ConfigError(f"report_formats={items!r}: each must be one of {', '.join(FIGURE_FORMATS)}")
    return tuple(dict.fromkeys(items))
