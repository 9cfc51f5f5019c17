"""The model registry (timm-style): ``@register_model`` on a factory, with the metadata the runner
needs before building it; ``create_model`` by registered name or by dotted path ``pkg.mod:factory``
(a model outside the registry, see docs/plugins.md)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from core.errors import BenchmarkError
from core.suggest import did_you_mean
from core.registry import Registry

DOCS = "docs/plugins.md"
HEADS: tuple[str, ...] = ("classifier", "segmenter")

MODELS: Registry[Callable[..., Any]] = Registry("model", builtins=(
    "models.sg_cldff", "models.baselines_seg", "models.baselines_cls", "models.baselines_xincept", "models.floors",
    "models.linear_probe",
))
"""The built-in modules are imported on the first lookup, so `import models` stays cheap."""


@dataclass(frozen=True)
class ModelInfo:
    """What the runner asks of a model without building it: its ``heads`` (which sources it can learn
    from, which metrics apply), the square input sizes it takes with its default options (at least
    ``min_size`` px, a multiple of ``size_multiple``) and whether its output carries pooled
    ``features`` (feature drift is n/a without them; the contract holds the model to it)."""

    heads: tuple[str, ...]
    min_size: int = 1
    size_multiple: int = 1
    features: bool = False

    def __post_init__(self) -> None:
        if not self.heads or set(self.heads) - set(HEADS):
            raise BenchmarkError(f"model heads must be a non-empty subset of {HEADS}, got {self.heads!r}")
        if not (isinstance(self.min_size, int) and isinstance(self.size_multiple, int)
                and self.min_size >= 1 and self.size_multiple >= 1):
            raise BenchmarkError(f"model min_size and size_multiple must be positive ints, got "
                                 f"{self.min_size!r} and {self.size_multiple!r}")
        if not isinstance(self.features, bool):
            raise BenchmarkError(f"model features must be True or False, got {self.features!r}")

    @property
    def has_classifier(self) -> bool:
        return "classifier" in self.heads

    @property
    def has_segmenter(self) -> bool:
        return "segmenter" in self.heads

    def size_problem(self, img_size: int) -> str | None:
        """Why the model cannot take ``img_size`` x ``img_size`` input, or None if it can."""
        if img_size < self.min_size:
            return f"needs inputs of at least {self.min_size} px, got {img_size}"
        if img_size % self.size_multiple:
            return f"needs input sides that are multiples of {self.size_multiple} px, got {img_size}"
        return None


def register_model(name: str | None = None, *, heads: tuple[str, ...] | list[str], min_size: int = 1,
                   size_multiple: int = 1, features: bool = False,
                   description: str | None = None) -> Callable[[Callable], Callable]:
    """Register a factory ``(num_classes, img_size, **options) -> WBCModel`` with its metadata
    (``features`` False by default, so a plugin written before the field keeps working).

    A registration outside the built-in modules (a plugin's) loads the built-ins first, so a name that
    clashes with a built-in fails at the plugin's import, naming both modules (``core.registry``)."""
    return MODELS.register(name, description, metadata=ModelInfo(tuple(heads), min_size, size_multiple, features))


def is_dotted_path(name: str) -> bool:
    """``pkg.mod:factory`` names a factory outside the registry; registered names have no colon."""
    return ":" in name


def describe(name: str) -> str:
    """How errors name a model: the name and the module that defines its factory."""
    if is_dotted_path(name):
        return f"model '{name}' (dotted path)"
    factory = MODELS.get(name)
    return f"model '{name}' ({getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', '?')})"


def _import_factory(path: str) -> Callable[..., Any]:
    module_name, _, attr = path.partition(":")
    fix = f"a dotted path is MODULE:FACTORY, e.g. mylab.nets:tiny_unet, importable from PYTHONPATH; see {DOCS}"
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise BenchmarkError(f"model '{path}': no module named '{e.name}'; install its package or put its "
                                 f"folder on PYTHONPATH ({fix})") from e
        raise BenchmarkError(f"model '{path}': importing '{module_name}' failed: {type(e).__name__}: {e}; "
                             f"install what it needs ({fix})") from e
    except Exception as e:
        raise BenchmarkError(f"model '{path}': importing '{module_name}' failed: {type(e).__name__}: {e}; "
                             f"fix that module ({fix})") from e
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part, None)
    if not attr or obj is None or not callable(obj):
        raise BenchmarkError(f"model '{path}': module '{module_name}' has no callable '{attr}' ({fix})")
    return obj


def model_factory(name: str) -> Callable[..., Any]:
    """The factory behind a registered name or a dotted path."""
    if is_dotted_path(name):
        return _import_factory(name)
    if name not in MODELS:
        raise BenchmarkError(f"unknown model '{name}'{did_you_mean(name, MODELS.names())}; valid models: {', '.join(MODELS.names())}. A model of "
                             f"your own: load its plugin (--plugin MODULE, $WBC_PLUGINS or an installed entry "
                             f"point) or name its factory by dotted path MODULE:FACTORY; see {DOCS}")
    return MODELS.get(name)


def model_info(name: str) -> ModelInfo | None:
    """A model's metadata without building it: the registry's, or for a dotted path its factory's
    ``heads`` (and optional ``min_size``, ``size_multiple``, ``features``) attributes; None when a
    dotted-path factory declares no ``heads`` (the caller then builds the model once to ask it)."""
    factory = model_factory(name)
    if not is_dotted_path(name):
        info = MODELS.metadata(name)
        if not isinstance(info, ModelInfo):
            raise BenchmarkError(f"{describe(name)} was registered without its metadata: register it with "
                                 f"models.register_model(name, heads=...); see {DOCS}")
        return info
    heads = getattr(factory, "heads", None)
    if heads is None:
        return None
    try:
        return ModelInfo(tuple(heads), getattr(factory, "min_size", 1), getattr(factory, "size_multiple", 1),
                         getattr(factory, "features", False))
    except BenchmarkError as e:
        raise BenchmarkError(f"model '{name}': its factory's attributes are wrong: {e}; see {DOCS}") from e


def create_model(name: str, **kwargs: Any):
    """Build a model by registered name or dotted path; an unknown name raises an error listing the
    valid ones, and an option the model does not take (``pretrained`` on a model with no timm
    backbone) a clear error."""
    factory = model_factory(name)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        options = sorted(set(kwargs) - {"num_classes", "img_size"})
        if options and not any(f"'{k}'" in str(exc) for k in ("num_classes", "img_size")):
            raise BenchmarkError(f"model '{name}' does not take option(s) {', '.join(options)} ({exc})") from exc
        raise BenchmarkError(f"model '{name}': its factory must take num_classes and img_size keyword arguments "
                             f"({exc}); see {DOCS}") from exc


def list_models() -> list[str]:
    return MODELS.names()
