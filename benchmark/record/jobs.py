"""The job record, typed: what a job folder's ``config.json``, ``metrics.json`` and
``evaluations/<target>.json`` hold, written by the engine and read by every reader through
:func:`read_job`, so a field is named and checked in one place.

A job folder counts once it holds a ``done`` marker (the engine writes it last and renames the
folder into place); dot-prefixed temporaries never count. ``config.json`` carries
``record_schema``; a file without it was written before the schema was versioned and reads as
schema 1, and a newer schema than this code knows is refused rather than misread.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from benchmark.record.vocabulary import EVALUATIONS_DIR, NO_TREATMENT, display_name
from core.errors import BenchmarkError

RECORD_SCHEMA = 1
"""Version of the job record's layout; bump when a field changes meaning or a required one is added."""


def read_json(path: Path) -> dict:
    """A JSON object from a results folder, or a BenchmarkError that says what is wrong and where."""
    try:
        obj = json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise BenchmarkError(f"{path} is missing: the job directory is incomplete; delete it to rerun the job") from e
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"{path} is not valid JSON ({e}); delete the job directory to rerun it") from e
    if not isinstance(obj, dict):
        raise BenchmarkError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _field(obj: dict, key: str, where: object):
    if key not in obj:
        raise BenchmarkError(f"{where}: missing field '{key}'")
    return obj[key]


def env_id(record: dict) -> str:
    """Short hash of what decides bit-identity in an environment record (``benchmark.engine.environment``):
    packages, python, platform, processor, threads, lock; the code commit is left out."""
    keep = {k: v for k, v in record.items() if k != "code"}
    blob = json.dumps(keep, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


@dataclass(frozen=True)
class JobConfig:
    """``config.json``: what changes the job's result (its id is a hash of those fields), then how
    and where it ran. The first ten fields come from ``benchmark.engine.plan.Job.config``."""

    engine_version: str
    protocol: str
    model: str
    model_kwargs: dict
    treatment: str
    source: str
    seed: int
    budget: dict
    split_hash: str
    data_versions: dict
    job_id: str
    device: str | None = None
    environment: dict | None = None
    determinism: dict | None = None
    task: str | None = None
    has_classifier: bool | None = None
    has_segmenter: bool | None = None
    record_schema: int = RECORD_SCHEMA

    REQUIRED = ("protocol", "model", "source", "seed", "budget", "job_id", "split_hash")
    """What every reader needs; older records may lack the rest (they get the defaults)."""

    @property
    def budget_name(self) -> str:
        return str(self.budget["name"])

    @property
    def display(self) -> str:
        return display_name(self.model, self.treatment)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict, where: object) -> JobConfig:
        schema = obj.get("record_schema", 1)
        if not isinstance(schema, int) or schema > RECORD_SCHEMA:
            raise BenchmarkError(f"{where}: record_schema {schema!r} is newer than this code reads "
                                 f"({RECORD_SCHEMA}): update the harness to read it")
        for key in cls.REQUIRED:
            _field(obj, key, where)
        budget = obj["budget"]
        if not isinstance(budget, dict) or "name" not in budget:
            raise BenchmarkError(f"{where}: 'budget' must be an object with a 'name'")
        versions = obj.get("data_versions") or {}
        if not isinstance(versions, dict):
            raise BenchmarkError(f"{where}: 'data_versions' must be an object, got {versions!r}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in obj.items() if k in known}
        values.update(protocol=str(obj["protocol"]), model=str(obj["model"]), source=str(obj["source"]),
                      seed=int(obj["seed"]), job_id=str(obj["job_id"]), split_hash=str(obj["split_hash"]),
                      treatment=str(obj.get("treatment", NO_TREATMENT)), data_versions=versions,
                      engine_version=str(obj.get("engine_version", "")), model_kwargs=obj.get("model_kwargs") or {},
                      record_schema=schema)
        return cls(**values)

    @classmethod
    def read(cls, job_dir: Path) -> JobConfig:
        path = Path(job_dir) / "config.json"
        return cls.from_json(read_json(path), path)


@dataclass(frozen=True)
class TargetResult:
    """One target's scores (a ``metrics.json`` target, or the ``result`` of an evaluation file):
    the domain its images come from, its transform (``{"kind": k, **params}``; None for images as
    they are), severity (None where the kind has none), image count and metrics (null: not applicable)."""

    domain: str
    n: int
    metrics: dict
    severity: float | None = None
    transform: dict | None = None

    def to_json(self) -> dict:
        return {"domain": self.domain, "severity": self.severity, "transform": self.transform, "n": self.n,
                "metrics": self.metrics}

    @classmethod
    def from_json(cls, obj: object, where: str, name: str, source: str) -> TargetResult:
        if not isinstance(obj, dict) or not isinstance(obj.get("metrics"), dict):
            raise BenchmarkError(f"{where}: expected an object with 'metrics'")
        domain, severity = str(_field(obj, "domain", where)), obj.get("severity")
        transform = obj["transform"] if "transform" in obj else legacy_transform(name, source, domain, severity)
        return cls(domain, int(_field(obj, "n", where)), obj["metrics"], severity, transform)


def legacy_transform(name: str, source: str, domain: str, severity: float | None) -> dict | None:
    """The transform of a target recorded without one (a ``metrics.json`` without ``transform``, a
    ``summary.csv`` without ``target_kind``). The protocols then knew two kinds and named their
    targets ``<kind>:<arg>``: re-staining from the source into domain ``arg``, HED jitter at
    severity ``arg``; every other target was an untouched image set. This is the one place that
    reads a target's kind from its name."""
    kind, colon, _ = name.partition(":")
    if colon and kind == "restain":
        return {"kind": kind, "source": source, "target": domain}
    if colon and kind == "hed":
        return {"kind": kind, "severity": severity}
    return None


@dataclass(frozen=True)
class Evaluation:
    """``evaluations/<target>.json``: a target ``evaluate`` scored after the job ran, with what it
    loaded (``data_versions``) and the rest of its provenance as written."""

    target: str
    result: dict
    data_versions: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Evaluation:
        obj = read_json(path)
        versions = obj.get("data_versions") or {}
        if not isinstance(versions, dict):
            raise BenchmarkError(f"{path}: 'data_versions' must be an object, got {versions!r}")
        return cls(str(_field(obj, "target", path)), _field(obj, "result", path), versions)


def evaluation_files(job_dir: Path) -> list[Path]:
    """A job's evaluation records, sorted; temporaries (dot-prefixed) are never read."""
    folder = Path(job_dir) / EVALUATIONS_DIR
    return sorted(folder.glob("[!.]*.json")) if folder.is_dir() else []


def evaluated_targets(job_dir: Path) -> dict[str, dict]:
    """Per-target records that ``evaluate`` added to a job, keyed by target name; each has the
    shape of a ``metrics.json`` target."""
    return {e.target: e.result for e in map(Evaluation.read, evaluation_files(job_dir))}


@dataclass(frozen=True)
class JobRecord:
    """A completed job as every reader sees it: its config, its targets (those scored when it ran,
    then those ``evaluate`` added) and which of them were added."""

    config: JobConfig
    targets: dict[str, TargetResult]
    evaluated: frozenset[str]


def read_job(job_dir: Path) -> JobRecord:
    """A completed job folder, checked: a field missing, of the wrong type, or a target both scored
    by the run and added by ``evaluate`` is a BenchmarkError naming the file."""
    job_dir = Path(job_dir)
    config = JobConfig.read(job_dir)
    met_path = job_dir / "metrics.json"
    targets = _field(read_json(met_path), "targets", met_path)
    if not isinstance(targets, dict) or not targets:
        raise BenchmarkError(f"{met_path}: 'targets' must be a non-empty object of per-target results")
    evaluated = evaluated_targets(job_dir)
    clash = sorted(set(evaluated) & set(targets))
    if clash:
        raise BenchmarkError(f"{job_dir / EVALUATIONS_DIR}: target(s) {', '.join(clash)} are also in {met_path}; "
                             "delete the evaluation files")
    merged = {**targets, **evaluated}
    typed = {name: TargetResult.from_json(merged[name], f"{met_path} target '{name}'", name, config.source)
             for name in sorted(merged)}
    return JobRecord(config, typed, frozenset(evaluated))


def completed_job_dirs(out_dir: Path) -> list[Path]:
    """Job directories with a ``done`` marker, sorted; temporary (dot-prefixed) ones never count."""
    root = Path(out_dir) / "jobs"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "done").exists())


def require_jobs(out_dir: Path) -> list[Path]:
    """The completed job directories, or a BenchmarkError saying there is nothing to report."""
    if not Path(out_dir).is_dir():
        raise BenchmarkError(f"results folder {out_dir} does not exist: pass the --out of a `run`")
    jobs = completed_job_dirs(out_dir)
    if not jobs:
        raise BenchmarkError(
            f"no completed jobs in {Path(out_dir) / 'jobs'} (a job counts once its directory holds a 'done' file); "
            "run `python -m benchmark run --protocol ...` with this --out first"
        )
    return jobs
