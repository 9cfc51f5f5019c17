"""The output contract (``models.base``, docs/plugins.md), checked before a job trains: one tiny
forward and loss on a dummy batch, so a model that breaks it fails in a second with what is wrong
and how to fix it, not after an epoch deep inside the engine."""
from __future__ import annotations

import json
from typing import Any, Callable

import torch

from core.errors import BenchmarkError
from core.sample import CLASSES
from models.base import ModelOutput, WBCModel
from models.registry import DOCS, ModelInfo, create_model, describe, model_info

DUMMY_BATCH = 2
"""Images in the dummy batch: two, so batch norm in training mode has more than one value per channel."""

Fail = Callable[[str, str], BenchmarkError]
"""(what is wrong, the fix) -> the error that names the model."""

_checked: set[str] = set()


def dummy_batch(img_size: int, num_classes: int = len(CLASSES)) -> dict[str, torch.Tensor]:
    """A batch as the engine gives one (``models.base``), from a fixed private generator."""
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(DUMMY_BATCH, 3, img_size, img_size, generator=g),
        "mask": torch.randint(0, 3, (DUMMY_BATCH, img_size, img_size), generator=g),
        "mask_valid": torch.ones(DUMMY_BATCH, dtype=torch.bool),
        "label": torch.arange(DUMMY_BATCH) % num_classes,
    }


def check_model(name: str, options: dict[str, Any], img_size: int) -> None:
    """Build ``name`` with ``options`` and check its contract at ``img_size``, once per process and
    configuration. The global torch RNG is restored afterwards, so whether the check ran never
    changes a job's numbers."""
    key = json.dumps([name, options, img_size], sort_keys=True, default=str)
    if key in _checked:
        return
    with torch.random.fork_rng(devices=[]):
        try:
            model = create_model(name, num_classes=len(CLASSES), img_size=img_size, **options)
        except BenchmarkError:
            raise
        except Exception as e:
            raise BenchmarkError(f"{describe(name)} failed to build with options {options} at {img_size} px: "
                                 f"{type(e).__name__}: {e}; fix its factory (see {DOCS})") from e
        check_output_contract(model, name, img_size, model_info(name))
    _checked.add(key)


def check_output_contract(model: object, name: str, img_size: int, info: ModelInfo | None = None,
                          num_classes: int = len(CLASSES)) -> None:
    """Raise a BenchmarkError naming the model, what is wrong and the fix, if ``model`` breaks the
    contract on a dummy batch: its type and heads, ``forward``'s output types and shapes in
    training and eval mode (``features`` as the metadata declares them; without metadata, as the
    training-mode output gives them), and ``loss``'s signature, finiteness and link to the parameters."""
    where = f"{describe(name)} breaks the output contract at {img_size} px"

    def fail(what: str, fix: str) -> BenchmarkError:
        return BenchmarkError(f"{where}: {what}; {fix} (see {DOCS})")

    if not isinstance(model, WBCModel):
        raise fail(f"its factory returned {type(model).__name__}, not a models.base.WBCModel",
                   "subclass models.base.WBCModel and implement forward and loss")
    heads = (model.has_classifier, model.has_segmenter)
    if not any(heads):
        raise fail("has_classifier and has_segmenter are both False", "a model needs at least one head")
    if info is not None and (info.has_classifier, info.has_segmenter) != heads:
        raise fail(f"its metadata declares heads {info.heads} but the built model reports has_classifier="
                   f"{heads[0]}, has_segmenter={heads[1]}", "make register_model(heads=...) match the model")
    batch = dummy_batch(img_size, num_classes)
    model.set_class_weights(torch.ones(num_classes))
    model.train()
    out = _forward(model, batch["image"], fail)
    features = info.features if info is not None else getattr(out, "features", None) is not None
    _check_output(model, out, img_size, num_classes, features, fail)
    try:
        result = model.loss(out, batch)
    except Exception as e:
        raise fail(f"loss raised {type(e).__name__}: {e}",
                   "loss(out, batch) gets forward's ModelOutput and a batch dict with image, mask, mask_valid, label")
    if not (isinstance(result, tuple) and len(result) == 2):
        raise fail(f"loss returned {type(result).__name__}, not (total, parts)",
                   "return the total loss (a 0-d tensor) and a dict of named float parts")
    total, parts = result
    if not isinstance(total, torch.Tensor) or total.dim() != 0:
        raise fail(f"loss's total is {_shape(total)}, not a 0-d tensor", "reduce the loss to a scalar tensor (e.g. .mean())")
    if not torch.isfinite(total):
        raise fail(f"the loss on a dummy batch is {total.item()}", "guard logs and divisions (e.g. clamp, an epsilon, "
                   "skip terms with no labelled samples)")
    if not isinstance(parts, dict) or not all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in parts.items()):
        raise fail(f"loss's parts are {parts!r}, not a dict of str -> float",
                   "return the named parts as Python floats (tensor.item())")
    if any(p.requires_grad for p in model.parameters()) and not total.requires_grad:
        raise fail("the loss does not depend on the trainable parameters",
                   "compute it from forward's output tensors, without .detach(), .item() or torch.no_grad()")
    model.eval()
    with torch.no_grad():
        _check_output(model, _forward(model, batch["image"], fail), img_size, num_classes, features, fail)


def _forward(model: WBCModel, x: torch.Tensor, fail: Fail) -> object:
    try:
        return model(x)
    except Exception as e:
        raise fail(f"forward on a {tuple(x.shape)} batch raised {type(e).__name__}: {e}",
                   "forward takes float RGB in [0, 1], shape (B, 3, H, W), at the img_size the factory was given")


def _check_output(model: WBCModel, out: object, size: int, k: int, features: bool, fail: Fail) -> None:
    mode = "training" if model.training else "eval"
    if not isinstance(out, ModelOutput):
        raise fail(f"forward ({mode} mode) returned {type(out).__name__}, not models.base.ModelOutput",
                   "return ModelOutput(class_logits=..., mask_logits=..., saliency=...)")
    b = DUMMY_BATCH
    for field, has, want, flag in (("class_logits", model.has_classifier, f"({b}, {k})", "has_classifier"),
                                   ("mask_logits", model.has_segmenter, f"({b}, 1 or 2, {size}, {size})", "has_segmenter")):
        value = getattr(out, field)
        if not has:
            if value is not None:
                raise fail(f"{field} is given but {flag} is False", f"set {flag} = True or return {field}=None")
            continue
        ok_shape = isinstance(value, torch.Tensor) and value.is_floating_point() and (
            tuple(value.shape) == (b, k) if field == "class_logits"
            else value.dim() == 4 and value.shape[0] == b and value.shape[1] in (1, 2) and tuple(value.shape[2:]) == (size, size))
        if not ok_shape:
            what = ("one logit per class for each image" if field == "class_logits"
                    else "mask logits at the input resolution")
            raise fail(f"{field} ({mode} mode) is {_shape(value)}, expected a float tensor {want}",
                       f"{flag} = True promises {field} of that shape ({what})")
        if not torch.isfinite(value).all():
            raise fail(f"{field} ({mode} mode) holds non-finite values", "keep logits finite (clamp before log/logit)")
    sal = out.saliency
    if sal is not None and not (isinstance(sal, torch.Tensor) and sal.dim() == 4 and tuple(sal.shape[:2]) == (b, 1)):
        raise fail(f"saliency is {_shape(sal)}, expected None or a tensor ({b}, 1, h, w)", "return saliency=None if unsure")
    _check_features(out.features, features, mode, fail)


def _check_features(value: object, declared: bool, mode: str, fail: Fail) -> None:
    """Features as declared: a finite float (B, D) tensor, or None for a model that declares none."""
    if not declared:
        if value is not None:
            raise fail(f"forward ({mode} mode) gives features but its metadata declares none",
                       "register it with register_model(..., features=True), or return features=None")
        return
    if value is None:
        raise fail(f"its metadata declares features but forward ({mode} mode) gives none",
                   "return ModelOutput(..., features=<its pooled (B, D) representation>), or declare features=False")
    b = DUMMY_BATCH
    if not (isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() == 2
            and value.shape[0] == b and value.shape[1] >= 1):
        raise fail(f"features ({mode} mode) is {_shape(value)}, expected a float tensor ({b}, D)",
                   "pool the representation to one vector per image (e.g. feature_map.mean(dim=(2, 3)))")
    if not torch.isfinite(value).all():
        raise fail(f"features ({mode} mode) hold non-finite values", "keep the pooled features finite")


def _shape(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor {tuple(value.shape)}"
    return f"a {type(value).__name__}"
