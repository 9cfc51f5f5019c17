"""Write the tiny synthetic results folder behind the report golden-file tests, deterministically.

    python scripts/make_results_fixture.py                  # rewrite tests/fixtures/results_tiny/jobs
    python scripts/make_results_fixture.py --update-golden  # ... and rebuild the golden reports
    python scripts/make_results_fixture.py --out /tmp/x     # write the jobs elsewhere

The fixture holds three experiments on invented numbers, the first two with two sources so that
every multi-source branch of the reports runs:

- cross_stain from sources ``src`` and ``alt``: the four SG-CLDFF variants x 3 seeds, a
  classification-only baseline with 2 seeds (its IoU is n/a, its n differs), SG-CLDFF under a
  stain treatment with 1 seed (its hypotheses cannot be evaluated), the two training-free floors
  (``constant_mask``, ``majority_class``) with 3 seeds; targets in_domain, restain:a, hed:0.1,
  hed:0.3;
- within_dataset from sources ``bccd`` and ``src`` (in_domain only): SG-CLDFF, the two ablations
  of the paper's Table 3 and the baseline, for the H3/H4 hypotheses and the claims table;
- cross_scanner from source ``src``: SG-CLDFF, its no-align ablation and the constant-mask floor
  x 3 seeds; targets in_domain and two severities each of defocus and JPEG, with the parameters
  the registry gives them (:mod:`wbcdata.target_kinds`), for the per-kind severity tables and
  figures (the scanner shifts are not cross-stain targets, so H1 is not evaluated there);

plus an unfinished job (no ``done``) and a leftover temporary directory, both of which reports
must ignore; 10 test images of 8x8 px. Predictions come from seeded random generators and the
metrics are computed from them with :mod:`benchmark.record.metrics`, as the runner does, so tables,
figures and ``predictions.jsonl.gz`` agree. The effects are built in: the alignment loss
protects IoU under stain shift (H1 SUPPORTED); cross-layer fusion does not raise macro-F1 or
accuracy (H2, H4 not supported).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sklearn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmark.record.atomic import write_json  # noqa: E402
from core.sample import CLASSES  # noqa: E402
from benchmark.record.metrics import (  # noqa: E402
    SEGMENTATION_METRICS, classification_metrics, mask_to_rle, segmentation_metrics,
)
from benchmark.engine.invariance import cosine_distance, flip_rate, iou_change  # noqa: E402
from wbcdata.target_kinds import get_target_kind  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "results_tiny"
GOLDEN = FIXTURE / "golden"
SIZE, N_IMAGES = 8, 10
BUDGET = {"name": "tiny", "img_size": SIZE, "epochs": 1, "batch_size": 4, "lr": 0.001, "lr_step_epochs": 1,
          "lr_gamma": 1.0, "patience": 1, "max_train_samples": None}


@dataclass(frozen=True)
class Target:
    name: str
    domain: str
    severity: float | None
    transform: dict | None
    shift: float
    """How hard the target is, 0 (in-domain) to 1: scales each model's loss under shift."""


def _graded(kind: str, severity: float, shift: float) -> Target:
    """A target of a graded registered kind at ``severity``, named and parameterized as the protocols do."""
    params = dict(get_target_kind(kind).grades)[severity]
    return Target(f"{kind}:{severity:g}", f"{kind}:{severity:g}", severity, {"kind": kind, **params}, shift)


def targets(protocol: str, source: str) -> tuple[Target, ...]:
    """The test targets of one job: in-domain alone within a dataset; re-stain and HED beside it in
    cross_stain; defocus and JPEG in cross_scanner."""
    in_domain = Target("in_domain", source, 0.0, None, 0.0)
    if protocol == "within_dataset":
        return (in_domain,)
    if protocol == "cross_scanner":
        return (in_domain, _graded("defocus", 1.0, 0.2), _graded("defocus", 5.0, 0.9), _graded("jpeg", 2.0, 0.3),
                _graded("jpeg", 5.0, 0.7))
    return (
        in_domain,
        Target("restain:a", "a", None, {"kind": "restain", "source": source, "target": "a"}, 0.6),
        Target("hed:0.1", "hed:0.1", 0.1, {"kind": "hed", "severity": 0.1}, 0.3),
        Target("hed:0.3", "hed:0.3", 0.3, {"kind": "hed", "severity": 0.3}, 1.0),
    )


@dataclass(frozen=True)
class FakeModel:
    model: str
    treatment: str
    seeds: tuple[int, ...]
    cls_skill: float | None
    """Logit margin of the true class in-domain; None: no classifier."""
    cls_drop: float
    seg_error: float | None
    """Pixel flip probability in-domain; None: no segmenter."""
    seg_drop: float
    """Extra flip probability at shift 1."""
    floor: bool = False
    """A training-free floor: one prediction for every image (see :func:`_floor_predictions`)."""


MODELS = (
    FakeModel("sg_cldff", "none", (0, 1, 2), 2.2, 0.8, 0.04, 0.04),
    FakeModel("sg_cldff_no_saliency", "none", (0, 1, 2), 1.9, 1.2, 0.06, 0.20),
    FakeModel("sg_cldff_no_align", "none", (0, 1, 2), 2.2, 0.8, 0.04, 0.18),
    FakeModel("sg_cldff_no_cldff", "none", (0, 1, 2), 2.6, 0.8, 0.05, 0.06),
    FakeModel("resnext_cc", "none", (0, 1), 2.0, 1.0, None, 0.0),
    FakeModel("sg_cldff", "macenko", (0,), 2.2, 0.5, 0.04, 0.03),
    FakeModel("constant_mask", "none", (0, 1, 2), None, 0.0, 0.0, 0.0, floor=True),
    FakeModel("majority_class", "none", (0, 1, 2), 0.0, 0.0, None, 0.0, floor=True),
)
WITHIN_MODELS = tuple(m for m in MODELS if m.treatment == "none"
                      and m.model in ("sg_cldff", "sg_cldff_no_saliency", "sg_cldff_no_cldff", "resnext_cc"))
SCANNER_MODELS = tuple(m for m in MODELS if m.treatment == "none"
                       and m.model in ("sg_cldff", "sg_cldff_no_align", "constant_mask"))
EXPERIMENTS: tuple[tuple[str, tuple[str, ...], tuple[FakeModel, ...]], ...] = (
    ("cross_stain", ("src", "alt"), MODELS),
    ("within_dataset", ("bccd", "src"), WITHIN_MODELS),
    ("cross_scanner", ("src",), SCANNER_MODELS),
)
"""(protocol, sources, models) of the fixture."""


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(str(p).encode()) for p in parts])


def true_masks() -> np.ndarray:
    """(N, 8, 8) label maps: a cell disc (cytoplasm) with a nucleus, the same in every target."""
    rng = _rng("masks")
    yy, xx = np.mgrid[:SIZE, :SIZE]
    masks = np.zeros((N_IMAGES, SIZE, SIZE), np.uint8)
    for i in range(N_IMAGES):
        cy, cx = rng.uniform(2.5, 4.5, 2)
        r = rng.uniform(2.0, 3.5)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        masks[i][d2 <= r * r] = 1
        masks[i][d2 <= (0.5 * r) ** 2] = 2
    return masks


LABELS = np.repeat(np.arange(len(CLASSES)), N_IMAGES // len(CLASSES))


def _floor_predictions(m: FakeModel, seed: int, truth: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """What ``models.floors`` predicts, fitted on a seeded bootstrap of the test masks and labels
    that stands in for the seed's training split: the thresholded mean mask, or the label prior."""
    train = _rng(m.model, seed).choice(N_IMAGES, N_IMAGES)
    if m.seg_error is not None:
        wbc = (truth[train] > 0).mean(axis=0) > 0.5
        nucleus = wbc & ((truth[train] == 2).mean(axis=0) > 0.5)
        return None, np.repeat((wbc.astype(np.uint8) + nucleus)[None], N_IMAGES, axis=0)
    counts = np.bincount(LABELS[train], minlength=len(CLASSES))
    return np.tile(np.round(counts / counts.sum(), 5), (N_IMAGES, 1)), None


def _predictions(m: FakeModel, protocol: str, source: str, seed: int, target: Target,
                 truth: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    if m.floor:
        return _floor_predictions(m, seed, truth)
    rng = _rng(m.model, m.treatment, protocol, source, seed, target.name)
    proba = masks = None
    if m.cls_skill is not None:
        margin = m.cls_skill - m.cls_drop * target.shift + 0.3 * _rng(m.model, m.treatment, seed).normal()
        logits = rng.normal(0.0, 1.0, (N_IMAGES, len(CLASSES))) + margin * np.eye(len(CLASSES))[LABELS]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        proba = np.round(e / e.sum(axis=1, keepdims=True), 5)
    if m.seg_error is not None:
        flip = rng.random(truth.shape) < m.seg_error + m.seg_drop * target.shift
        masks = truth.copy()
        masks[flip & (truth > 0)] = 0
        masks[flip & (truth == 0)] = 1
    return proba, masks


def _metrics(proba: np.ndarray | None, pred: np.ndarray | None, truth: np.ndarray, explains: bool) -> dict:
    """What ``benchmark.engine.train.score_predictions`` stores: every part the model lacks is null
    (saliency consistency too for a model without Grad-CAM, such as the floors)."""
    empty = classification_metrics(np.zeros(0, int), np.zeros((0, len(CLASSES))))
    out = dict(classification_metrics(LABELS, proba) if proba is not None else empty)
    if pred is None:
        out.update({k: None for k in SEGMENTATION_METRICS})
    else:
        out.update(segmentation_metrics(pred, truth))
    # a deterministic stand-in for the Grad-CAM consistency the runner measures
    out["saliency_consistency"] = round(float(proba.max(axis=1).mean()), 5) if explains else None
    return out


def _invariance(base: tuple, proba: np.ndarray | None, pred: np.ndarray | None, truth: np.ndarray,
                shifted: bool, features: bool) -> dict:
    """What ``benchmark.engine.invariance`` stores for a target against the unshifted cells (the
    in-domain predictions ``base``), with the probabilities standing in for a model's features."""
    if not shifted:
        return {"flip_rate": None, "iou_change": None, "feature_drift": None}
    b_proba, b_pred = base
    return {"flip_rate": None if proba is None else flip_rate(b_proba, proba),
            "iou_change": None if pred is None else iou_change(b_pred, pred, truth, np.ones(len(truth), bool)),
            "feature_drift": float(cosine_distance(b_proba, proba).mean()) if features and proba is not None else None}


def _selection(m: FakeModel, seed: int, target: Target, metrics: dict) -> dict:
    """Invented side-by-side rules (``benchmark.engine.selection``): ``last`` as the job's own numbers,
    ``train_val`` an earlier epoch that lost some of the shift robustness, ``oracle`` a little above."""
    out = {}
    for rule, epoch, gain in (("train_val", 9, -0.04 * target.shift), ("last", 19, 0.0), ("oracle", 15, 0.01)):
        jitter = 0.0 if rule == "last" else 0.005 * _rng(m.model, seed, rule).normal()
        out[rule] = {k: None if metrics[k] is None else round(min(1.0, max(0.0, metrics[k] + gain + jitter)), 6)
                     for k in ("iou", "macro_f1")}
        out[rule]["epoch"] = epoch
    return out


def _gzip_jsonl(path: Path, rows: list[dict]) -> None:
    """Byte-stable gzip: no file name and a zero timestamp in the header."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        for r in rows:
            f.write((json.dumps(r) + "\n").encode())


def split_hash(protocol: str, source: str, seed: int) -> str:
    """Every model of one (protocol, source, seed) shares its split, as in a real sweep."""
    return hashlib.sha256(f"{protocol}-{source}-split-{seed}".encode()).hexdigest()[:16]


def _config(m: FakeModel, protocol: str, source: str, seed: int) -> dict:
    cfg = {"engine_version": "1", "protocol": protocol, "model": m.model, "model_kwargs": {}, "source": source,
           "seed": seed, "budget": BUDGET, "split_hash": split_hash(protocol, source, seed)}
    if m.treatment != "none":  # older configs lack the field: the reports must default it to "none"
        cfg["treatment"] = m.treatment
    job_id = hashlib.sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    return {**cfg, "job_id": job_id, "device": "cpu", "torch": "fixture", "task": "multitask",
            "has_classifier": m.cls_skill is not None, "has_segmenter": m.seg_error is not None}


def write_job(jobs: Path, protocol: str, source: str, m: FakeModel, seed: int, done: bool = True,
              dirname: str | None = None) -> Path:
    truth = true_masks()
    cfg = _config(m, protocol, source, seed)
    name = m.model if m.treatment == "none" else f"{m.model}+{m.treatment}"
    job_dir = jobs / (dirname or f"{name}__{source}__seed{seed}__{cfg['job_id']}")
    job_dir.mkdir(parents=True)
    results, records = {}, []
    base = None
    for t in targets(protocol, source):
        proba, pred = _predictions(m, protocol, source, seed, t, truth)
        base = base or (proba, pred)  # the first target is in-domain: the unshifted cells
        metrics = _metrics(proba, pred, truth, proba is not None and not m.floor)
        metrics.update(_invariance(base, proba, pred, truth, t.transform is not None, not m.floor))
        metrics["selection"] = _selection(m, seed, t, metrics)
        results[t.name] = {"domain": t.domain, "severity": t.severity, "transform": t.transform, "n": N_IMAGES,
                           "metrics": metrics}
        for i in range(N_IMAGES):
            records.append({"target": t.name, "id": f"{source}/{i:03d}", "domain": t.domain, "label": int(LABELS[i]),
                            "proba": None if proba is None else proba[i].tolist(),
                            "pred_mask": None if pred is None else mask_to_rle(pred[i]),
                            "true_mask": mask_to_rle(truth[i])})
    write_json(job_dir / "config.json", cfg)
    write_json(job_dir / "fingerprint.json", {"split_hash": cfg["split_hash"], "note": "synthetic report fixture"})
    write_json(job_dir / "metrics.json", {"targets": results, "train": {"best_epoch": 0, "seconds": 0.0}})
    _gzip_jsonl(job_dir / "predictions.jsonl.gz", records)
    if done:
        (job_dir / "done").write_text("fixture\n")
    return job_dir


def build_fixture(out: Path) -> Path:
    """(Re)write ``<out>/jobs``; returns it."""
    jobs = out / "jobs"
    shutil.rmtree(jobs, ignore_errors=True)
    # sklearn's input validation dominates on 10 samples; skipping it changes no value (inputs are clean)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for protocol, sources, models in EXPERIMENTS:
            for source in sources:
                for m in models:
                    for seed in m.seeds:
                        write_job(jobs, protocol, source, m, seed)
        broken = FakeModel("sg_cldff", "none", (), 0.0, 0.0, 0.5, 0.5)  # numbers that would show if counted
        write_job(jobs, "cross_stain", "src", broken, 3, done=False)
        write_job(jobs, "cross_stain", "src", broken, 4, done=True, dirname=".sg_cldff__src__seed4__tmp.tmp-1")
    return jobs


GOLDEN_FILES = ("summary.csv", "hypotheses.md", "hypotheses.json", "claims.md", "claims.tex")


def build_reports(results: Path) -> list[Path]:
    """Summary, tables and hypotheses of ``results`` (no figures: they are not golden); returns the files."""
    from benchmark.reports.claims import write_claims
    from benchmark.reports.hypotheses import write_hypotheses
    from benchmark.record.summary import build_summary, write_summary
    from benchmark.reports.tables import write_tables

    df = build_summary(results)
    write_summary(df, results / "summary.csv")
    tables = write_tables(df, results / "tables")
    write_hypotheses(df, results)
    write_claims(df, results)
    return [results / f for f in GOLDEN_FILES] + tables


def update_golden() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        shutil.copytree(FIXTURE / "jobs", results / "jobs")
        files = build_reports(results)
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for f in files:
            dest = GOLDEN / f.relative_to(results)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
            print(dest.relative_to(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=FIXTURE, help="folder to write jobs/ into (default: the fixture)")
    ap.add_argument("--update-golden", action="store_true", help="also rebuild the golden reports of the fixture")
    args = ap.parse_args(argv)
    print(f"wrote {build_fixture(args.out)}")
    if args.update_golden:
        if args.out.resolve() != FIXTURE.resolve():
            ap.error("--update-golden rebuilds the goldens of the committed fixture; do not combine it with --out")
        update_golden()
    return 0


if __name__ == "__main__":
    sys.exit(main())
