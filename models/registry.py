"""The model registry (timm-style): ``@register_model`` on a factory, ``create_model`` by name."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from benchmark.registry import Registry

MODELS: Registry[Callable[..., Any]] = Registry("model")
register_model = MODELS.register

# modules whose import registers models; imported lazily so `import models` stays cheap
_MODEL_MODULES = ("models.sg_cldff", "models.baselines_seg", "models.baselines_cls", "models.baselines_xincept")


def _load_all() -> None:
    for mod in _MODEL_MODULES:
        importlib.import_module(mod)


def create_model(name: str, **kwargs: Any):
    """Build a registered model; an unknown name raises an error listing the valid ones."""
    _load_all()
    return MODELS.get(name)(**kwargs)


def list_models() -> list[str]:
    _load_all()
    return MODELS.names()
