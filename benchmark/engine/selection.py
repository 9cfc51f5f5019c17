"""Model-selection rules side by side, as DomainBed reports them (Gulrajani & Lopez-Paz 2021; Yu et
al. 2024 show the rule can change a domain-generalisation conclusion).

A job's own metrics come from the weights its budget selects (the *primary* rule: ``train_val`` for
budget selection ``best``, ``last`` for ``last``). Beside them every job scores three rules on the
same images of each target, the share not held out for the oracle, so the rules differ only in the
weights they pick:

- ``train_val``: the epoch with the best validation score on the training domain (every epoch);
- ``last``: the final epoch trained;
- ``oracle``: per target, the candidate epoch with the best score on :data:`ORACLE_SHARE` of that
  target's images. It peeks at the test domain: an upper bound, never part of the primary verdicts.

Cost: the oracle scores its held-out shares only at candidate epochs (every :data:`ORACLE_EVERY`-th
and the last trained, DomainBed's checkpoint frequency idea) and keeps on the CPU only the weights
some target currently prefers; each rule's weights are then scored once on the rest of each target.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmark.engine.batches import ArraySet, TensorSet
from benchmark.engine.train import SetPredictions, TrainResult, predict, selection_metrics, selection_score
from benchmark.record.vocabulary import SELECTION_METRICS, SELECTION_RULES
from models.base import WBCModel

ORACLE_SHARE = 0.2
"""Share of each target's images (at least one) held out as the oracle's validation set."""

ORACLE_EVERY = 5
"""The oracle's candidate epochs: every 5th (epochs 4, 9, 14, ...) and the last trained."""

PRIMARY_RULE = {"best": "train_val", "last": "last"}
"""Which side-by-side rule a budget's ``selection`` is."""


def oracle_mask(ids: list[str], share: float = ORACLE_SHARE) -> np.ndarray:
    """Which of ``ids`` the oracle holds out: the ``round(share * n)`` (at least 1) with the smallest
    SHA-256 of the id, so a cell is held out in every target that holds it, whatever the order.
    All False for a target of fewer than two images (nothing would be left to score)."""
    out = np.zeros(len(ids), bool)
    if len(ids) < 2:
        return out
    k = max(1, int(round(share * len(ids))))
    order = sorted(range(len(ids)), key=lambda i: hashlib.sha256(ids[i].encode()).hexdigest())
    out[order[:k]] = True
    return out


def cpu_state(model: WBCModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclass
class OracleRule:
    """Scores each target's held-out share at the candidate epochs, during training
    (:func:`benchmark.engine.train.train` calls :meth:`after_epoch`), and keeps the weights some target
    prefers."""

    held: dict[str, ArraySet]
    task: str
    device: torch.device
    every: int = ORACLE_EVERY
    best: dict[str, tuple[float, int]] = field(default_factory=dict)
    weights: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    seconds: float = 0.0
    _uploaded: dict[str, TensorSet] = field(default_factory=dict)
    _scored: set[int] = field(default_factory=set)

    def after_epoch(self, epoch: int, model: WBCModel, last: bool = False) -> None:
        """Score the candidates at a candidate epoch (or the last one trained, ``last``)."""
        if epoch in self._scored or not (last or (epoch + 1) % self.every == 0):
            return
        t0 = time.perf_counter()
        self._scored.add(epoch)
        improved = False
        for name, data in self.held.items():
            if name not in self._uploaded:
                self._uploaded[name] = TensorSet.upload(data, self.device)
            pred = predict(model, data, self.device, on_device=self._uploaded[name])
            score = selection_score(selection_metrics(pred, self.task))
            if score > self.best.get(name, (-np.inf, -1))[0]:
                self.best[name] = (score, epoch)
                improved = True
        if improved:
            self.weights[epoch] = cpu_state(model)
            wanted = {e for _, e in self.best.values()}
            self.weights = {e: w for e, w in self.weights.items() if e in wanted}
        self.seconds += time.perf_counter() - t0


def split_targets(targets: dict[str, ArraySet]) -> tuple[dict[str, ArraySet], dict[str, ArraySet]]:
    """Each target's oracle share and the rest every rule is scored on."""
    held, rest = {}, {}
    for name, data in targets.items():
        mask = oracle_mask(data.ids)
        if mask.any():
            held[name], rest[name] = data.subset(mask), data.subset(~mask)
        else:
            rest[name] = data
    return held, rest


def _scores(model: WBCModel, data: ArraySet, task: str, device: torch.device, epoch: int) -> dict:
    return _record(selection_metrics(predict(model, data, device), task), epoch)


def _record(metrics: dict, epoch: int | None) -> dict:
    return {**{m: metrics.get(m) for m in SELECTION_METRICS}, "epoch": epoch}


def rest_of(pred: SetPredictions) -> SetPredictions:
    """A whole target's predictions cut to the share not held out for the oracle (what
    :func:`split_targets` leaves to score), so the job's own weights need no second pass."""
    held = oracle_mask(pred.ids)
    keep = ~held if held.any() else np.ones(len(pred.ids), bool)

    def cut(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[keep]

    return SetPredictions([i for i, k in zip(pred.ids, keep) if k], [d for d, k in zip(pred.domains, keep) if k],
                          pred.labels[keep], cut(pred.proba), cut(pred.pred_masks), pred.true_masks[keep],
                          pred.mask_valid[keep], pred.has_nucleus, cut(pred.features))


def _load(model: WBCModel, state: dict, train_set: ArraySet, seed: int, device: torch.device) -> None:
    """Weights in, then the model's gradient-free stage refitted on them (XIncept-ALL's XGBoost
    depends on the features of the weights it sits on); a model without such a stage skips it."""
    model.load_state_dict(state)
    if type(model).after_training is not WBCModel.after_training:
        model.after_training(train_set.images, train_set.labels, seed, device, train_set.masks, train_set.mask_valid)


def score_rules(model: WBCModel, result: TrainResult, oracle: OracleRule, rest: dict[str, ArraySet],
                train_set: ArraySet, seed: int, device: torch.device, primary: str,
                kept: dict[str, SetPredictions]) -> dict[str, dict[str, dict]]:
    """target -> rule -> {iou, macro_f1, epoch} on the target's rest. The ``primary`` rule's weights
    are the job's own: their scores come from its whole-target predictions ``kept``, and so do the
    oracle's picks of the same epoch. Leaves ``model`` holding whichever rule's weights came last:
    call it after the job's own weights are written. A training-free model has one set of weights,
    so every rule gives the same scores."""
    own = {name: _record(selection_metrics(rest_of(kept[name]), oracle.task), None) for name in rest}
    if not result.candidates:  # training-free: its one fit is every rule's pick
        return {name: {rule: {**s, "epoch": 0} for rule in SELECTION_RULES} for name, s in own.items()}
    own_epoch = result.candidates[primary][0]
    out: dict[str, dict[str, dict]] = {name: {primary: {**s, "epoch": own_epoch}} for name, s in own.items()}
    for rule, (epoch, state) in result.candidates.items():
        if rule != primary:
            _load(model, state, train_set, seed, device)
            for name, data in rest.items():
                out[name][rule] = _scores(model, data, oracle.task, device, epoch)
    for name, (_, picked) in oracle.best.items():
        if picked == own_epoch:
            out[name]["oracle"] = {**own[name], "epoch": picked}
    for epoch, state in sorted(oracle.weights.items()):
        names = [n for n, (_, picked) in sorted(oracle.best.items()) if picked == epoch and picked != own_epoch]
        if names:
            _load(model, state, train_set, seed, device)
            for name in names:
                out[name]["oracle"] = _scores(model, rest[name], oracle.task, device, epoch)
    for name in rest:
        out[name].setdefault("oracle", {**{m: None for m in SELECTION_METRICS}, "epoch": None})
    return out
