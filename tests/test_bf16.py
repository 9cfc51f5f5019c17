"""The GPU's bf16 mixed-precision path, exercised on CPU (CI has no GPU).

The engine autocasts to bf16 on a GPU only; ``benchmark.engine.train.AUTOCAST_CPU_DTYPE`` switches the
same autocast on for CPU, so every registered model, stain treatment and target kind goes through
one training step and prediction under it here (registry-driven: a newly registered one is covered
without editing this file). Training-free computations (the saliency prior, the classical
segmenter, the floors) must stay float32: they are fixed, so bf16 must not change them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from benchmark.engine import train as engine
from benchmark.engine.batches import ArraySet, ImageAugment
from benchmark.engine.budgets import get_budget
from benchmark.engine.targets import TargetBuilder
from benchmark.engine.train import SetPredictions, predict, train
from benchmark.engine.treatments import fit_treatment, list_treatments
from core.sample import Sample
from models.base import WBCModel
from models.registry import create_model, list_models
from models.saliency_prior import PRIORS, hematoxylin_density, saliency_prior
from protocols.split import Split, targets_for_kind
from wbcdata.target_kinds import TARGET_KINDS

CPU = torch.device("cpu")
N_TRAIN, N_VAL, N_TEST = 6, 2, 2
"""Per-domain sample counts: one training step of 4 images (6 so Macenko has a template to fit)."""
TINY = dataclasses.replace(get_budget("smoke"), batch_size=4, max_train_samples=4)
"""The smoke budget cut to one optimizer step."""
MULTITASK_MODEL = "sg_cldff"
"""Classifier + segmenter + saliency prior: the model the treatment and target-kind tests train."""


@pytest.fixture
def bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the engine's CPU autocast to bf16, as it is on a GPU."""
    monkeypatch.setattr(engine, "AUTOCAST_CPU_DTYPE", torch.bfloat16)


@pytest.fixture(scope="module")
def data(by_domain: dict[str, list[Sample]]) -> dict[str, list[Sample]]:
    """A few procedural samples per stain domain: the training source first, then the others."""
    return {d: ss[:N_TRAIN + N_VAL + N_TEST] for d, ss in sorted(by_domain.items())}


def _sets(samples: list[Sample]) -> tuple[ArraySet, ArraySet]:
    return (ArraySet.from_samples(samples[:N_TRAIN], "bf16 train"),
            ArraySet.from_samples(samples[N_TRAIN:N_TRAIN + N_VAL], "bf16 val"))


@contextmanager
def _autocast_seen(model: WBCModel) -> Iterator[list[bool]]:
    """A list that gets, per forward call inside the block, whether bf16 CPU autocast was on."""
    seen: list[bool] = []
    handle = model.register_forward_pre_hook(lambda *_: seen.append(
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16))
    try:
        yield seen
    finally:
        handle.remove()


def _check(pred: SetPredictions, model: WBCModel) -> None:
    """Float32, finite probabilities and uint8 label maps, for the heads the model has."""
    if model.has_classifier:
        assert pred.proba is not None and pred.proba.dtype == np.float32
        assert np.isfinite(pred.proba).all() and np.allclose(pred.proba.sum(1), 1, atol=1e-5)
    if model.has_segmenter:
        assert pred.pred_masks is not None and pred.pred_masks.dtype == np.uint8
        assert set(np.unique(pred.pred_masks)) <= {0, 1, 2}


def _train(name: str, train_set: ArraySet, val_set: ArraySet, augment: ImageAugment | None = None) -> WBCModel:
    """One optimizer step under the engine (training-free models: their fit), checked."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, img_size=TINY.img_size)
    with _autocast_seen(model) as seen:
        result = train(model, train_set, val_set, TINY, seed=0, device=CPU, extra_augment=augment, progress=False)
    assert seen and all(seen), "the engine did not run the model under bf16 autocast"
    assert all(np.isfinite(h["loss"]) for h in result.history)
    return model


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_and_predicts_under_bf16(bf16: None, data: dict[str, list[Sample]], name: str) -> None:
    train_set, val_set = _sets(next(iter(data.values())))
    model = _train(name, train_set, val_set)
    _check(predict(model, val_set, CPU), model)
    if not any(p.requires_grad for p in model.parameters()):  # training-free: bf16 must not change it
        x = torch.from_numpy(val_set.images).permute(0, 3, 1, 2).float() / 255
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        for a, b in ((ref.class_logits, out.class_logits), (ref.mask_logits, out.mask_logits)):
            assert (a is None and b is None) or (b.dtype == torch.float32 and torch.equal(a, b))


@pytest.mark.parametrize("treatment", list_treatments())
def test_every_treatment_trains_and_predicts_under_bf16(bf16: None, data: dict[str, list[Sample]],
                                                        treatment: str) -> None:
    train_set, val_set = _sets(next(iter(data.values())))
    fitted = fit_treatment(treatment, list(train_set.images))
    model = _train(MULTITASK_MODEL, train_set.map_images(fitted.preprocess), val_set.map_images(fitted.preprocess),
                   fitted.augment)
    _check(predict(model, val_set.map_images(fitted.preprocess), CPU), model)


@pytest.fixture(scope="module")
def trained(data: dict[str, list[Sample]]) -> tuple[WBCModel, Split, dict[str, Sample]]:
    """The multi-task model after one bf16 step, the split it was trained on (no targets yet), its samples."""
    source, samples = next(iter(data.items()))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "AUTOCAST_CPU_DTYPE", torch.bfloat16)
        model = _train(MULTITASK_MODEL, *_sets(samples))
    ids = [s.id for s in samples]
    split = Split("bf16", source, 0, ("synthetic",), tuple(ids[:N_TRAIN]), tuple(ids[N_TRAIN:N_TRAIN + N_VAL]), ())
    return model, split, {s.id: s for ss in data.values() for s in ss}


@pytest.mark.parametrize("kind", TARGET_KINDS.names())
def test_every_target_kind_predicts_under_bf16(bf16: None, trained: tuple[WBCModel, Split, dict[str, Sample]],
                                               kind: str) -> None:
    model, split, by_id = trained
    test_ids = [i for i in by_id if by_id[i].domain == split.source][-N_TEST:]
    domains = sorted({s.domain for s in by_id.values()})
    target = targets_for_kind(kind, test_ids, split.source, domains)[-1]  # the strongest grade
    builder = TargetBuilder(dataclasses.replace(split, targets=(target,)), by_id)
    with _autocast_seen(model) as seen:
        _check(predict(model, ArraySet.from_samples(builder.samples(target), target.name), CPU), model)
    assert seen and all(seen)


def _smears(n: int = 4, size: int = 64) -> torch.Tensor:
    """Random RGB with a dark purple disc (a nucleus) in the middle, so every step has contrast."""
    g = torch.Generator().manual_seed(0)
    x = 0.7 + 0.3 * torch.rand(n, 3, size, size, generator=g)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size / 5) ** 2
    x[:, :, disc] = torch.tensor([0.35, 0.2, 0.55])[:, None]
    return x


def test_classical_under_bf16_autocast_equals_fp32() -> None:
    model, x = create_model("classical", num_classes=5, img_size=64), _smears()
    ref = model(x).mask_logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x).mask_logits
    assert out.dtype == torch.float32 and torch.equal(out, ref)
    assert (ref > 0).any() and (ref < 0).any()  # a real segmentation, not a blank one


@pytest.mark.parametrize("prior", PRIORS)
def test_saliency_prior_under_bf16_autocast_equals_fp32(prior: str) -> None:
    x = _smears()
    mask = torch.zeros(x.shape[0], *x.shape[-2:], dtype=torch.long)
    mask[:, 16:48, 16:48] = 1
    ref = saliency_prior(x, (16, 16), prior, mask)
    ref_density = hematoxylin_density(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = saliency_prior(x, (16, 16), prior, mask)
        density = hematoxylin_density(x)
    assert out.dtype == torch.float32 and torch.equal(out, ref)
    assert density.dtype == torch.float32 and torch.equal(density, ref_density)

