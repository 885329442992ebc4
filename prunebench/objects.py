"""Model and data objects passed to the Python API (``prunebench.run(model=my_net, data=my_dm)``)
as registry entries named by their content, and their re-registration in a study's worker
processes (:mod:`prunebench.engine.batch`). Neither the API nor the batch executor imports
the other for this.
"""

from __future__ import annotations

import copy
import hashlib
import io
from collections.abc import Sequence
from typing import Any

from prunebench.errors import ConfigError

#: Objects registered in this process as (kind, object, data_name): a study's worker processes
#: register them again (same content, same names) before running (prunebench.engine.batch).
_OBJECTS: dict[str, tuple[str, Any, Any]] = {}


def registered_objects(names: Any = None) -> list[tuple[str, Any, Any]]:
    """The model and data objects registered in this process (those named in ``names``, if given)."""
    return [v for k, v in _OBJECTS.items() if names is None or k in names]


def register_objects(objects: Sequence[tuple[str, Any, Any]]) -> None:
    """Register objects another process registered (:func:`registered_objects`)."""
    for kind, obj, data_name in objects:
        if kind == "model":
            register_model_object(obj)
        else:
            register_data_object(obj, data_name)


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
        h.update(b"\0")
    return h.hexdigest()[:12]


def register_model_object(module: Any) -> str:
    """Register an ``nn.Module`` as a model (a fresh copy per run); return its registry name.

    The name carries a hash of the architecture and the weights, so a changed model is a
    new run and the same one is found again.
    """
    import torch

    from prunebench import catalog
    from prunebench.models.base import MODELS, register_model
    from prunebench.models.external import check_io

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buf)
    cls = type(module).__name__
    name = f"object_{cls.lower()}_{_digest(repr(module).encode(), buf.getvalue())}"
    if name not in MODELS:
        snapshot = copy.deepcopy(module).cpu()
        _OBJECTS[name] = ("model", snapshot, None)

        def factory(input_shape: Sequence[int], num_classes: int) -> Any:
            net = copy.deepcopy(snapshot)
            check_io(net, input_shape, num_classes, f"model={cls} (the object passed to prunebench.run)")
            return net

        catalog.MODELS.add(name, help=f"the {cls} object passed to prunebench.run")
        register_model(name)(factory)
    return name


def register_data_object(dm: Any, data_name: str | None = None) -> str:
    """Register a data module object; return its registry name.

    A prunebench TensorDataModule is named by its tensors' content; any other data module
    needs ``data_name`` (its content cannot be fingerprinted cheaply): runs on different
    data must not share ids.
    """
    from prunebench import catalog
    from prunebench.data import DATASETS
    from prunebench.data.base import TensorDataModule

    cls = type(dm).__name__
    if data_name is None:
        if not isinstance(dm, TensorDataModule):
            raise ConfigError(f"data={cls} object: give data_name='<a name for this data>' so that runs on "
                              f"different data do not share run ids (a {cls} cannot be fingerprinted)")
        dm.prepare_data()
        dm.setup("fit")
        import torch

        parts = []
        for t in (dm.x_train, dm.y_train, dm.x_val, dm.y_val, dm.x_test, dm.y_test):
            buf = io.BytesIO()
            torch.save(t.detach().cpu(), buf)
            parts.append(buf.getvalue())
        data_name = _digest(cls.encode(), *parts)
    name = f"object_{cls.lower()}_{data_name}"
    if name not in DATASETS:
        _OBJECTS[name] = ("data", dm, data_name if not isinstance(dm, TensorDataModule) else None)
        def factory(seed: int = 0, root: Any = None) -> Any:
            if isinstance(dm, TensorDataModule):
                own = copy.copy(dm)
                own.seed = seed
                return own
            from prunebench.data.custom import LoaderDataModule

            return LoaderDataModule(dm, target=f"<{cls} object>", seed=seed, key="data")

        factory.name = name  # type: ignore[attr-defined]
        catalog.DATASETS.add(name, help=f"the {cls} object passed to prunebench.run")
        DATASETS.register(name)(factory)  # type: ignore[arg-type]
    return name
