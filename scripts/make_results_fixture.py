"""Write the tiny synthetic results folder behind the report golden-file tests, deterministically.

    python scripts/make_results_fixture.py                  # rewrite tests/fixtures/results_tiny/jobs
    python scripts/make_results_fixture.py --update-golden  # ... and rebuild the golden reports
    python scripts/make_results_fixture.py --out /tmp/x     # write the jobs elsewhere

The fixture is a cross_stain experiment on invented numbers: the four SG-CLDFF variants x 3 seeds,
a classification-only baseline with 2 seeds (its IoU is n/a, its n differs), SG-CLDFF under a
stain treatment with 1 seed (its hypotheses cannot be evaluated), an unfinished job (no ``done``)
and a leftover temporary directory, both of which reports must ignore. Targets: in_domain,
restain:a, hed:0.1, hed:0.3; 10 test images of 8x8 px. Predictions come from seeded random
generators and the metrics are computed from them with :mod:`benchmark.metrics`, as the runner
does, so tables, figures and ``predictions.jsonl.gz`` agree. The effects are built in: the
alignment loss protects IoU under stain shift (H1 passes); cross-layer fusion does not raise
macro-F1 (H2 fails).
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

from benchmark.atomic import write_json  # noqa: E402
from benchmark.data.sample import CLASSES  # noqa: E402
from benchmark.metrics import classification_metrics, mask_to_rle, segmentation_metrics  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "results_tiny"
GOLDEN = FIXTURE / "golden"
PROTOCOL, SOURCE, SIZE, N_IMAGES = "cross_stain", "src", 8, 10
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


TARGETS = (
    Target("in_domain", SOURCE, 0.0, None, 0.0),
    Target("restain:a", "a", None, {"kind": "restain", "source": SOURCE, "target": "a"}, 0.6),
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


MODELS = (
    FakeModel("sg_cldff", "none", (0, 1, 2), 2.2, 0.8, 0.04, 0.04),
    FakeModel("sg_cldff_no_saliency", "none", (0, 1, 2), 1.9, 1.2, 0.06, 0.20),
    FakeModel("sg_cldff_no_align", "none", (0, 1, 2), 2.2, 0.8, 0.04, 0.18),
    FakeModel("sg_cldff_no_cldff", "none", (0, 1, 2), 2.6, 0.8, 0.05, 0.06),
    FakeModel("resnext_cc", "none", (0, 1), 2.0, 1.0, None, 0.0),
    FakeModel("sg_cldff", "macenko", (0,), 2.2, 0.5, 0.04, 0.03),
)


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


def _predictions(m: FakeModel, seed: int, target: Target,
                 truth: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    rng = _rng(m.model, m.treatment, seed, target.name)
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


def _metrics(proba: np.ndarray | None, pred: np.ndarray | None, truth: np.ndarray) -> dict:
    """What ``benchmark.train.score_predictions`` stores: every part the model lacks is null."""
    empty = classification_metrics(np.zeros(0, int), np.zeros((0, len(CLASSES))))
    out = dict(classification_metrics(LABELS, proba) if proba is not None else empty)
    if pred is None:
        out.update({k: None for k in ("iou", "dice", "pixel_accuracy", "nucleus_iou")})
    else:
        out.update(segmentation_metrics(pred, truth))
    # a deterministic stand-in for the Grad-CAM consistency the runner measures
    out["saliency_consistency"] = None if proba is None else round(float(proba.max(axis=1).mean()), 5)
    return out


def _gzip_jsonl(path: Path, rows: list[dict]) -> None:
    """Byte-stable gzip: no file name and a zero timestamp in the header."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        for r in rows:
            f.write((json.dumps(r) + "\n").encode())


def _config(m: FakeModel, seed: int) -> dict:
    cfg = {"engine_version": "1", "protocol": PROTOCOL, "model": m.model, "model_kwargs": {}, "source": SOURCE,
           "seed": seed, "budget": BUDGET, "split_hash": hashlib.sha256(f"split-{seed}".encode()).hexdigest()[:16]}
    if m.treatment != "none":  # older configs lack the field: the reports must default it to "none"
        cfg["treatment"] = m.treatment
    job_id = hashlib.sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    return {**cfg, "job_id": job_id, "device": "cpu", "torch": "fixture", "task": "multitask",
            "has_classifier": m.cls_skill is not None, "has_segmenter": m.seg_error is not None}


def write_job(jobs: Path, m: FakeModel, seed: int, done: bool = True, dirname: str | None = None) -> Path:
    truth = true_masks()
    cfg = _config(m, seed)
    name = m.model if m.treatment == "none" else f"{m.model}+{m.treatment}"
    job_dir = jobs / (dirname or f"{name}__{SOURCE}__seed{seed}__{cfg['job_id']}")
    job_dir.mkdir(parents=True)
    targets, records = {}, []
    for t in TARGETS:
        proba, pred = _predictions(m, seed, t, truth)
        targets[t.name] = {"domain": t.domain, "severity": t.severity, "transform": t.transform, "n": N_IMAGES,
                           "metrics": _metrics(proba, pred, truth)}
        for i in range(N_IMAGES):
            records.append({"target": t.name, "id": f"{SOURCE}/{i:03d}", "domain": t.domain, "label": int(LABELS[i]),
                            "proba": None if proba is None else proba[i].tolist(),
                            "pred_mask": None if pred is None else mask_to_rle(pred[i]),
                            "true_mask": mask_to_rle(truth[i])})
    write_json(job_dir / "config.json", cfg)
    write_json(job_dir / "fingerprint.json", {"split_hash": cfg["split_hash"], "note": "synthetic report fixture"})
    write_json(job_dir / "metrics.json", {"targets": targets, "train": {"best_epoch": 0, "seconds": 0.0}})
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
        for m in MODELS:
            for seed in m.seeds:
                write_job(jobs, m, seed)
        broken = FakeModel("sg_cldff", "none", (), 0.0, 0.0, 0.5, 0.5)  # numbers that would show if counted
        write_job(jobs, broken, 3, done=False)
        write_job(jobs, broken, 4, done=True, dirname=f".sg_cldff__{SOURCE}__seed4__tmp.tmp-1")
    return jobs


GOLDEN_FILES = ("summary.csv", "hypotheses.md", "hypotheses.json")


def build_reports(results: Path) -> list[Path]:
    """Summary, tables and hypotheses of ``results`` (no figures: they are not golden); returns the files."""
    from benchmark.hypotheses import write_hypotheses
    from benchmark.summary import build_summary, write_summary
    from benchmark.tables import write_tables

    df = build_summary(results)
    write_summary(df, results / "summary.csv")
    tables = write_tables(df, results / "tables")
    write_hypotheses(df, results)
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
