"""Configs from overrides, as the command line composes them: Hydra's compose API on
prunebench's config folder, and prunebench's message for a key the config lacks. The CLI, the
Python API and the sweeps share it (none of them imports another front end).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prunebench.paths import conf_dir

# The configs: $PRUNEBENCH_CONF, else the source tree's top-level conf/ (a checkout or an
# editable install), else the copy shipped inside the wheel as the package prunebench.conf.
CONF_DIR = conf_dir()


def compose(overrides: Sequence[str]) -> Any:
    """The config composed from ``overrides`` (Hydra's compose API on prunebench's configs)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    init = (initialize_config_module(config_module="prunebench.conf", version_base="1.3")
            if CONF_DIR.startswith("pkg://") else initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"))
    with init:
        return hydra_compose(config_name="config", overrides=list(overrides))


def unknown_key_message(overrides: Sequence[str]) -> str | None:
    """Our message for an override of a key the config does not have (Hydra's suggests a ``+``,
    which would only add a key the typed options then reject): the key and the valid ones."""
    plain = [o for o in overrides if "=" in o and not o.startswith(("+", "~", "-")) and "/" not in o.split("=")[0]]
    for o in plain:
        key = o.split("=", 1)[0]
        if key.startswith("hydra.") or "." not in key and key in ("data", "model", "pruning", "schedule", "retrain",
                                                                      "trainer", "paths", "experiment", "sweep"):
            continue
        try:
            cfg = compose([x for x in overrides if x != o])
        except Exception:  # noqa: BLE001 - another override is at fault; try the next
            continue
        node: Any = cfg
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not hasattr(node, "keys") or part not in node:
                parent = ".".join(parts[:i])
                valid = sorted(str(k) for k in node.keys()) if hasattr(node, "keys") else []
                where = f" of {parent}" if parent else ""
                return f"{key} is not a config key; valid keys{where}: {', '.join(valid)}"
            node = node[part]
    return None
