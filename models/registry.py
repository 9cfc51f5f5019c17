"""The model registry (timm-style): ``@register_model`` on a factory, ``create_model`` by name."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from core.errors import BenchmarkError
from core.registry import Registry

MODELS: Registry[Callable[..., Any]] = Registry("model")
register_model = MODELS.register

# modules whose import registers models; imported lazily so `import models` stays cheap
_MODEL_MODULES = (
    "models.sg_cldff", "models.baselines_seg", "models.baselines_cls", "models.baselines_xincept", "models.floors",
)


def _load_all() -> None:
    for mod in _MODEL_MODULES:
        importlib.import_module(mod)


def create_model(name: str, **kwargs: Any):
    """Build a registered model; an unknown name raises an error listing the valid ones, and an
    option the model does not take (``pretrained`` on a model with no timm backbone) a clear error."""
    _load_all()
    factory = MODELS.get(name)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        options = sorted(set(kwargs) - {"num_classes", "img_size"})
        raise BenchmarkError(f"model '{name}' does not take option(s) {', '.join(options)} ({exc})") from exc


def list_models() -> list[str]:
    _load_all()
    return MODELS.names()
