"""``<out>/summary.csv``: one row per job x target, the single table every report is built from.

Only job directories holding a ``done`` marker count (see ``benchmark/engine/job.py``); dot-prefixed
temporary directories and unfinished ones are ignored. The summary is a pure function of the
``config.json`` / ``metrics.json`` files, so reports can be rebuilt at any time without training.
A metric that does not apply is stored as null in ``metrics.json`` and is an empty cell (NaN)
here, never 0.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmark.record.atomic import write_text
from benchmark.record.jobs import JobConfig, completed_job_dirs, env_id, legacy_transform, read_job, require_jobs
from benchmark.record.vocabulary import IN_DOMAIN, INVARIANCE_METRICS, METRICS, NO_SHIFT, PER_CLASS_F1, SELECTION_COLUMNS
from core.errors import BenchmarkError
from core.sample import CLASSES

KEY_COLUMNS: tuple[str, ...] = (
    "protocol", "model", "treatment", "display", "source", "seed", "budget", "job_id", "split_hash",
    "target", "domain", "target_kind", "target_params", "severity", "shifted", "evaluated", "n", "env_id",
    "code_commit",
)
"""``target_kind``, ``target_params`` (canonical JSON) and ``severity`` say what a target is; the
reports read them, never the target's name. ``evaluated``: the target was added after the job ran
(``evaluate``); such rows appear in the per-domain and severity tables but not in the protocol's
shifted means or its hypotheses, which stay those of the protocol's own targets."""
COLUMNS: tuple[str, ...] = KEY_COLUMNS + METRICS + PER_CLASS_F1 + SELECTION_COLUMNS
LATER_COLUMNS: tuple[str, ...] = INVARIANCE_METRICS + SELECTION_COLUMNS
"""Columns added after results were first committed: a summary written before them reads them as
empty (n/a), since the jobs behind it did not measure them."""

_DTYPES = {
    "protocol": str, "model": str, "treatment": str, "display": str, "source": str, "seed": "int64",
    "budget": str, "job_id": str, "split_hash": str, "target": str, "domain": str, "target_kind": str,
    "target_params": str, "severity": "float64",
    "shifted": bool, "evaluated": bool, "n": "int64", "env_id": str, "code_commit": str, **{m: "float64" for m in METRICS + PER_CLASS_F1 + SELECTION_COLUMNS},
}

SORT_KEYS: list[str] = ["protocol", "budget", "treatment", "model", "source", "seed", "target", "job_id"]
"""Canonical row order: reports sort by it first so they never depend on directory listing order."""


def _environment_columns(record: dict | None) -> dict[str, str]:
    """``env_id`` and ``code_commit`` of a job (empty for jobs written before they were recorded);
    the full records are in ``environments.json`` (:func:`environments`)."""
    if not isinstance(record, dict):
        return {"env_id": "", "code_commit": ""}
    code = record.get("code") or {}
    commit = code.get("commit") or ""
    return {"env_id": env_id(record), "code_commit": f"{commit[:12]}{'+dirty' if code.get('dirty') else ''}"}


def environments(out_dir: Path) -> dict[str, dict]:
    """The distinct environments of a results folder's completed jobs, keyed by ``env_id``, each
    with the job count and the commits seen (the record itself less the commit)."""
    out: dict[str, dict] = {}
    for job in completed_job_dirs(out_dir):
        record = JobConfig.read(job).environment
        if not isinstance(record, dict):
            continue
        entry = out.setdefault(env_id(record), {**{k: v for k, v in record.items() if k != "code"},
                                                "jobs": 0, "commits": []})
        entry["jobs"] += 1
        commit = _environment_columns(record)["code_commit"]
        if commit not in entry["commits"]:
            entry["commits"] = sorted([*entry["commits"], commit])
    return dict(sorted(out.items()))


def target_columns(transform: dict | None) -> dict[str, str]:
    """``target_kind`` and ``target_params`` of a target from its transform (``{"kind": k, **params}``
    or None for images as they are)."""
    if transform is None:
        return {"target_kind": NO_SHIFT, "target_params": "{}"}
    params = {k: v for k, v in transform.items() if k != "kind"}
    return {"target_kind": str(transform["kind"]), "target_params": json.dumps(params, sort_keys=True,
                                                                                separators=(",", ":"))}


def job_rows(job_dir: Path) -> list[dict]:
    """The summary rows of one completed job (one per evaluation target)."""
    job = read_job(job_dir)
    cfg = job.config
    base = {
        "protocol": cfg.protocol, "model": cfg.model, "treatment": cfg.treatment, "display": cfg.display,
        "source": cfg.source, "seed": cfg.seed, "budget": cfg.budget_name, "job_id": cfg.job_id,
        "split_hash": cfg.split_hash, **_environment_columns(cfg.environment),
    }
    rows = []
    for name, t in job.targets.items():
        where = f"{job_dir / 'metrics.json'} target '{name}'"
        row = {**base, "target": name, "domain": t.domain, **target_columns(t.transform), "severity": t.severity,
               "shifted": name != IN_DOMAIN, "evaluated": name in job.evaluated, "n": t.n}
        for m in METRICS:
            value = t.metrics.get(m)
            if value is not None and not isinstance(value, (int, float)):
                raise BenchmarkError(f"{where}: metric '{m}' is {value!r}, not a number or null")
            row[m] = value
        per_class = t.metrics.get("per_class") or {}
        for c, col in zip(CLASSES, PER_CLASS_F1):
            row[col] = (per_class.get(c) or {}).get("f1")
        rules = t.metrics.get("selection") or {}
        for col in SELECTION_COLUMNS:
            metric, rule = col.split("__")
            row[col] = (rules.get(rule) or {}).get(metric)
        rows.append(row)
    return rows


def _check_unique(df: pd.DataFrame) -> None:
    """Two jobs for the same model, seed and conditions would double-count a seed in every mean."""
    key = ["protocol", "budget", "display", "source", "seed", "target"]
    dup = df[df.duplicated(key, keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        ids = sorted(set(dup[(dup[key] == first[key]).all(axis=1)]["job_id"]))
        raise BenchmarkError(
            f"several completed jobs for {first['display']} / {first['source']} / seed {first['seed']} "
            f"({first['protocol']}, budget {first['budget']}): job ids {', '.join(ids)}; they differ in "
            "engine version or model_kwargs: move the ones not to report out of the jobs folder"
        )


def check_split_hashes(df: pd.DataFrame) -> None:
    """Every row of one (protocol, source, seed) must carry one split hash.

    The split depends only on the protocol, the source and the seed (budget, model and treatment do
    not change it), and every paired comparison of the reports pairs on the seed: the hypotheses,
    the tables' paired differences, gains over a floor and treatment effects. Two hashes for one
    seed mean some job ran on another data version or protocol definition, and its pairs would
    compare data, not models."""
    key = ["protocol", "source", "seed"]
    counts = df.groupby(key, sort=True)["split_hash"].nunique()
    bad = counts[counts > 1]
    if bad.empty:
        return
    protocol, source, seed = bad.index[0]
    rows = df[(df["protocol"] == protocol) & (df["source"] == source) & (df["seed"] == seed)]
    first_job = rows.groupby("split_hash", sort=True)["job_id"].min()
    hashes = ", ".join(f"split hash {h} (e.g. job {job})" for h, job in first_job.items())
    more = f"; {len(bad) - 1} more (protocol, source, seed) mismatch(es)" if len(bad) > 1 else ""
    raise BenchmarkError(
        f"protocol {protocol}, source {source}, seed {seed}: its jobs ran on different splits: {hashes}{more}; "
        "the split depends only on protocol, source and seed, so every job of a seed must share it for paired "
        "comparisons to compare models, not data: rerun the jobs of the stale hash on the current data (delete "
        "their job directories)"
    )


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in the canonical order, so nothing downstream depends on the order rows came in."""
    return df.sort_values(SORT_KEYS, kind="mergesort").reset_index(drop=True)


def build_summary(out_dir: Path) -> pd.DataFrame:
    """One row per completed job x target with every scalar metric (NaN where not applicable).

    Checked before any report sees it: one job per model, seed and conditions, and one split hash
    per (protocol, source, seed) (:func:`check_split_hashes`)."""
    rows = [r for job in require_jobs(Path(out_dir)) for r in job_rows(job)]
    df = pd.DataFrame(rows, columns=list(COLUMNS)).astype(_DTYPES)
    _check_unique(df)
    check_split_hashes(df)
    return canonical(df)


def jobs_without_folders(out_dir: Path) -> list[str]:
    """Job ids ``summary.csv`` holds whose completed folders are not under ``jobs/`` (all of them in
    a committed reference folder, whose checkpoints are not committed); [] without a summary."""
    path = Path(out_dir) / "summary.csv"
    if not path.exists():
        return []
    try:
        ids = pd.read_csv(path, usecols=["job_id"], dtype=str)["job_id"]
    except (ValueError, pd.errors.ParserError) as e:
        raise BenchmarkError(f"{path} has no readable job_id column ({e}); rebuild it with `report`") from e
    present = {d.name.rsplit("__", 1)[-1] for d in completed_job_dirs(out_dir)}
    return sorted(set(ids) - present)


def check_rebuildable(out_dir: Path, coming: frozenset[str] = frozenset()) -> None:
    """Refuse to rebuild ``summary.csv`` from ``jobs/`` when that would drop rows: its jobs are not
    all here. Checked before a run trains (``coming``: the job ids it will write, so a job folder
    deleted to rerun it is no loss) and before a report writes, so nothing is lost."""
    missing = sorted(set(jobs_without_folders(out_dir)) - coming)
    if missing:
        path = Path(out_dir) / "summary.csv"
        raise BenchmarkError(
            f"{path} holds {len(missing)} job(s) whose folders are not in {Path(out_dir) / 'jobs'} (a committed "
            f"reference folder, or job folders deleted by hand), e.g. {missing[0]}: rebuilding it from jobs/ would "
            f"drop their rows. Run into another folder (`run --out`; the default is runs/<protocol>), or delete "
            f"{path} to rebuild it from the job folders alone")


def load_summary(out_dir: Path) -> tuple[pd.DataFrame, bool]:
    """A results folder's rows and whether they were rebuilt from its job folders: from ``jobs/``
    when it has completed jobs (:func:`check_rebuildable` first), else from its ``summary.csv`` (a
    committed reference folder: anyone can re-derive its tables and verdicts)."""
    out_dir = Path(out_dir)
    if not completed_job_dirs(out_dir) and (out_dir / "summary.csv").exists():
        return read_summary(out_dir / "summary.csv"), False
    check_rebuildable(out_dir)
    return build_summary(out_dir), True


def write_summary(df: pd.DataFrame, path: Path) -> Path:
    write_text(path, df.to_csv(index=False, lineterminator="\n"))
    return path


def read_summary(path: Path) -> pd.DataFrame:
    """``summary.csv`` back into the DataFrame :func:`build_summary` made (same dtypes), split hashes
    checked as there (:func:`check_split_hashes`). A summary written before the target columns
    existed gets them from :func:`legacy_transform`."""
    try:
        df = pd.read_csv(path, dtype={k: v for k, v in _DTYPES.items() if v is str}, keep_default_na=False,
                         na_values={c: [""] for c in _DTYPES if _DTYPES[c] == "float64"})
    except FileNotFoundError as e:
        raise BenchmarkError(f"{path} is missing: run `report` on the results folder first") from e
    if "target_kind" not in df.columns and "target_params" not in df.columns:
        derived = [target_columns(legacy_transform(r.target, r.source, r.domain, None if pd.isna(r.severity)
                                                   else float(r.severity))) for r in df.itertuples(index=False)]
        df = df.assign(**pd.DataFrame(derived, index=df.index, columns=["target_kind", "target_params"]))
    if "evaluated" not in df.columns:  # written before `evaluate` existed: every row is the protocol's
        df = df.assign(evaluated=False)
    df = df.assign(**{c: float("nan") for c in LATER_COLUMNS if c not in df.columns})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise BenchmarkError(f"{path}: missing columns {missing}; rebuild it with `report`")
    df = df[list(COLUMNS)].astype(_DTYPES)
    check_split_hashes(df)
    return canonical(df)
