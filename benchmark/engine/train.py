"""The training engine: ``train`` fits a model on a split's training ids and keeps the epoch its
budget selects; ``predict`` turns a model into per-sample probabilities and masks.

Model selection (``budget.selection``): ``best`` keeps the epoch with the best validation score,
with early stopping after ``patience`` epochs without improvement (the paper's recipe); ``last``
keeps the final epoch (a fixed schedule, no selection). The score is macro-F1 for classifiers, IoU
for segment-only models, and the mean of the two for multi-task models (both are in [0, 1] and the
paper reports both). A split whose training data has no masks (PBC) or no labels selects on the
metric it can compute.
"""
from __future__ import annotations

import copy
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from benchmark.engine.batches import ArraySet, ImageAugment, TensorSet, eval_batches, paper_augmentation, train_batches
from benchmark.engine.budgets import Budget
from benchmark.engine.devices import resolve_device
from core.sample import CLASSES, MASK_NUCLEUS
from core.errors import BenchmarkError
from benchmark.record.metrics import SEGMENTATION_METRICS, classification_metrics, mean_iou, segmentation_metrics
from models.base import WBCModel

MAX_CLASS_WEIGHT = 10.0


@dataclass
class SetPredictions:
    """Per-sample outputs on one target: probabilities (N,K) or None, label maps (N,H,W) or None,
    pooled features (N,D) float32 or None (a model that gives none)."""

    ids: list[str]
    domains: list[str]
    labels: np.ndarray
    proba: np.ndarray | None
    pred_masks: np.ndarray | None
    true_masks: np.ndarray
    mask_valid: np.ndarray
    has_nucleus: bool = True
    features: np.ndarray | None = None


@dataclass
class TrainResult:
    state_dict: dict
    best_epoch: int
    val_metrics: dict
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    images_seen: int = 0
    candidates: dict[str, tuple[int, dict]] = field(default_factory=dict)
    """The side-by-side selection rules' picks (``benchmark.engine.selection``): ``train_val`` (best
    validation epoch) and ``last`` -> (epoch, weights); empty for a training-free model."""


class EpochObserver(Protocol):
    """Sees the model after every epoch, and once more after the last one trained (``last=True``),
    before the selected weights are restored (the oracle rule of ``benchmark.engine.selection``)."""

    def after_epoch(self, epoch: int, model: WBCModel, last: bool = False) -> None: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(labels: np.ndarray, num_classes: int = len(CLASSES)) -> torch.Tensor:
    """Inverse-frequency weights N / (K_present * n_c), clipped to 10 so a class with one training
    image (Zheng D1 has one basophil) cannot dominate the loss; absent classes get 0."""
    labels = labels[labels >= 0]
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    present = counts > 0
    w = np.zeros(num_classes)
    if present.any():
        w[present] = len(labels) / (present.sum() * counts[present])
    return torch.tensor(np.minimum(w, MAX_CLASS_WEIGHT), dtype=torch.float32)


def selection_metrics(pred: SetPredictions, task: str) -> dict:
    """The two scores model selection ranks epochs by (macro-F1, IoU), where the model and the data
    give them, exactly as :func:`score_predictions` computes them; the full set (HD95, boundary IoU,
    AUC, ECE: ~0.3 s of CPU a 60-image epoch at 224 px) is scored once, for the epoch kept."""
    out: dict = {}
    if pred.proba is not None and task != "segmentation":
        out["macro_f1"] = classification_metrics(pred.labels, pred.proba)["macro_f1"]
    if pred.pred_masks is not None and pred.mask_valid.any() and task != "classification":
        out["iou"] = mean_iou(pred.pred_masks[pred.mask_valid], pred.true_masks[pred.mask_valid])
    return out


def selection_score(metrics: dict) -> float:
    """Mean of the applicable ones of macro-F1 and IoU (see module docstring)."""
    vals = [metrics.get(k) for k in ("macro_f1", "iou")]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def _quiet() -> bool:
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


PREDICT_BATCH = 64
"""Images per forward pass when predicting (validation, test targets)."""


@torch.no_grad()
def predict(model: WBCModel, data: ArraySet, device: torch.device, batch_size: int = PREDICT_BATCH,
            on_device: TensorSet | None = None) -> SetPredictions:
    """Per-sample outputs of ``model`` on ``data``; ``on_device`` is ``data`` already uploaded (the
    validation set, scored every epoch, is uploaded once per job)."""
    model.eval()
    probas, masks, features, channels = [], [], [], 0
    for batch in eval_batches(TensorSet.upload(data, device) if on_device is None else on_device, batch_size):
        with autocast_for(device):
            out = model(batch["image"])
        if out.class_logits is not None:
            probas.append(torch.softmax(out.class_logits.float(), 1).cpu().numpy())
        if out.mask_logits is not None:
            masks.append(logits_to_label_map(out.mask_logits.float()).cpu().numpy())
            channels = out.mask_logits.shape[1]
        if out.features is not None:
            features.append(out.features.float().cpu().numpy())
    return SetPredictions(
        ids=list(data.ids), domains=list(data.domains), labels=data.labels,
        proba=np.concatenate(probas) if probas else None,
        pred_masks=np.concatenate(masks) if masks else None,
        true_masks=data.masks, mask_valid=data.mask_valid, has_nucleus=channels > 1,
        features=np.concatenate(features) if features else None,
    )


def logits_to_label_map(mask_logits: torch.Tensor) -> torch.Tensor:
    """Channel 0 = WBC logit, channel 1 (if present) = nucleus logit -> {0, 1 cytoplasm, 2 nucleus}."""
    wbc = mask_logits[:, 0] > 0
    out = wbc.to(torch.uint8)
    if mask_logits.shape[1] > 1:
        out[wbc & (mask_logits[:, 1] > 0)] = 2
    return out


def score_predictions(pred: SetPredictions, task: str) -> dict:
    """Overall metrics on one set; a metric the model or the data cannot give is None."""
    out: dict = {}
    if pred.proba is not None and task != "segmentation":
        out.update(classification_metrics(pred.labels, pred.proba))
    else:
        out.update(classification_metrics(np.zeros(0, int), np.zeros((0, len(CLASSES)))))
    if pred.pred_masks is not None and pred.mask_valid.any() and task != "classification":
        v = pred.mask_valid
        # a set whose true masks hold no nucleus (a user folder's whole-cell masks) has no nucleus to score
        nucleus = pred.has_nucleus and bool((pred.true_masks[v] == MASK_NUCLEUS).any())
        out.update(segmentation_metrics(pred.pred_masks[v], pred.true_masks[v], score_nucleus=nucleus))
    else:
        out.update({k: None for k in SEGMENTATION_METRICS})
    return out


AUTOCAST_CPU_DTYPE: torch.dtype | None = None
"""Autocast dtype on CPU (None: off); exists so CI (no GPU) can exercise the GPU's mixed-precision path."""


def autocast_for(device: torch.device) -> torch.autocast:
    """bf16 autocast on a GPU; on CPU off, unless a test sets ``AUTOCAST_CPU_DTYPE``."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if AUTOCAST_CPU_DTYPE is not None:
        return torch.autocast("cpu", dtype=AUTOCAST_CPU_DTYPE)
    return torch.autocast("cpu", enabled=False)


def _train_epoch(model: WBCModel, opt: torch.optim.Optimizer, batches, device: torch.device, epoch: int,
                 desc: str) -> list[tuple[float, int]]:
    """One epoch of optimizer steps; (loss, batch size) per step. A non-finite loss stops the run."""
    model.train()
    out_losses = []
    for step, batch in enumerate(batches):
        with autocast_for(device):
            out = model(batch["image"])
            loss, parts = model.loss(out, batch)
        if not torch.isfinite(loss):
            raise BenchmarkError(f"non-finite loss {loss.item()} at epoch {epoch} step {step} ({desc}); "
                                 f"parts: {parts}; no result is written")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out_losses.append((loss.item(), len(batch["label"])))
    return out_losses


def train(model: WBCModel, train_set: ArraySet, val_set: ArraySet, budget: Budget, seed: int, *,
          task: str = "multitask", device: torch.device | None = None, extra_augment: ImageAugment | None = None,
          progress: bool | None = None, desc: str = "", observer: EpochObserver | None = None) -> TrainResult:
    """Fit ``model`` under ``budget``; the seed fixes init (set by the caller before building the model),
    data order and the augmentation stream. A non-finite loss stops the run with a BenchmarkError."""
    device = device or resolve_device(None)
    model.to(device).to(memory_format=torch.channels_last)
    model.set_class_weights(class_weights(train_set.labels).to(device))
    if not any(p.requires_grad for p in model.parameters()):
        # a training-free model (the classical segmenter, the floors): at most statistics of the
        # training split to fit, then validation scored once
        model.after_training(train_set.images, train_set.labels, seed, device, train_set.masks, train_set.mask_valid)
        val = score_predictions(predict(model, val_set, device), task)
        return TrainResult(copy.deepcopy(model.state_dict()), 0, val, [], 0.0, 0)
    opt = torch.optim.Adam(model.parameters(), lr=budget.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=budget.lr_step_epochs, gamma=budget.lr_gamma)
    augment = paper_augmentation()
    train_data, val_data = TensorSet.upload(train_set, device), TensorSet.upload(val_set, device)
    show = (not _quiet()) if progress is None else progress
    bar = tqdm(total=budget.epochs, desc=desc or "train", disable=not show, leave=False)
    best = val_best = (-math.inf, -1, None)
    history: list[dict] = []
    seen, t0, stale = 0, time.perf_counter(), 0
    for epoch in range(budget.epochs):
        losses = _train_epoch(model, opt, train_batches(train_data, budget.batch_size, seed, epoch, augment,
                                                        extra_augment, budget.max_train_samples), device, epoch, desc)
        seen += sum(n for _, n in losses)
        losses = [loss for loss, _ in losses]
        sched.step()
        score = selection_score(selection_metrics(predict(model, val_set, device, on_device=val_data), task))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else None, "val_score": score})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", val=f"{score:.3f}")
        bar.update(1)
        if observer is not None:
            observer.after_epoch(epoch, model)
        if score > val_best[0]:
            val_best = (score, epoch, copy.deepcopy(model.state_dict()))
        if budget.selection == "last" or score > best[0]:
            best = val_best if budget.selection == "best" else (score, epoch, copy.deepcopy(model.state_dict()))
            stale = 0
        else:
            stale += 1
            if stale >= budget.patience:
                break
    bar.close()
    if observer is not None:
        observer.after_epoch(history[-1]["epoch"], model, last=True)
    if best[2] is None:
        raise BenchmarkError(f"{desc}: validation never gave a finite score; no result is written")
    last = (history[-1]["epoch"], best[2] if budget.selection == "last" else copy.deepcopy(model.state_dict()))
    candidates = {"train_val": (val_best[1], val_best[2]), "last": last} if val_best[2] is not None else {"last": last}
    model.load_state_dict(best[2])
    val = score_predictions(predict(model, val_set, device, on_device=val_data), task)  # the kept epoch's, in full
    model.after_training(train_set.images, train_set.labels, seed, device, train_set.masks, train_set.mask_valid)
    return TrainResult(best[2], best[1], val, history, time.perf_counter() - t0, seen, candidates)
