"""``<out>/summary.csv``: one row per job x target, the single table every report is built from.

Only job directories holding a ``done`` marker count (see ``benchmark/runner.py``); dot-prefixed
temporary directories and unfinished ones are ignored. The summary is a pure function of the
``config.json`` / ``metrics.json`` files, so reports can be rebuilt at any time without training.
A metric that does not apply is stored as null in ``metrics.json`` and is an empty cell (NaN)
here, never 0.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmark.atomic import write_json, write_text
from core.sample import CLASSES
from benchmark.environment import env_id
from core.errors import BenchmarkError
from benchmark.metrics import CLASSIFICATION_METRICS, SEGMENTATION_METRICS

IN_DOMAIN = "in_domain"
"""Target name of the untouched test set of the source domain; every other target is shifted."""

NO_TREATMENT = "none"
"""Stain treatment of jobs whose config predates the ``treatment`` field."""

EXPLAIN_METRICS: tuple[str, ...] = ("saliency_consistency",)
"""Share of Grad-CAM energy inside the WBC mask (``benchmark.explain``)."""
METRICS: tuple[str, ...] = CLASSIFICATION_METRICS + SEGMENTATION_METRICS + EXPLAIN_METRICS
PER_CLASS_F1: tuple[str, ...] = tuple(f"f1_{c}" for c in CLASSES)

NO_SHIFT = "none"
"""``target_kind`` of a target whose images are scored as they are (in-domain, another dataset)."""

KEY_COLUMNS: tuple[str, ...] = (
    "protocol", "model", "treatment", "display", "source", "seed", "budget", "job_id", "split_hash",
    "target", "domain", "target_kind", "target_params", "severity", "shifted", "evaluated", "n", "env_id",
    "code_commit",
)
"""``target_kind``, ``target_params`` (canonical JSON) and ``severity`` say what a target is; the
reports read them, never the target's name. ``evaluated``: the target was added after the job ran
(``evaluate``); such rows appear in the per-domain and severity tables but not in the protocol's
shifted means or its hypotheses, which stay those of the protocol's own targets."""
COLUMNS: tuple[str, ...] = KEY_COLUMNS + METRICS + PER_CLASS_F1

_DTYPES = {
    "protocol": str, "model": str, "treatment": str, "display": str, "source": str, "seed": "int64",
    "budget": str, "job_id": str, "split_hash": str, "target": str, "domain": str, "target_kind": str,
    "target_params": str, "severity": "float64",
    "shifted": bool, "evaluated": bool, "n": "int64", "env_id": str, "code_commit": str, **{m: "float64" for m in METRICS + PER_CLASS_F1},
}

EVALUATIONS_DIR = "evaluations"
"""Sub-folder of a job where ``evaluate`` adds targets after the job ran (``benchmark.evaluate``)."""

SORT_KEYS: list[str] = ["protocol", "budget", "treatment", "model", "source", "seed", "target", "job_id"]
"""Canonical row order: reports sort by it first so they never depend on directory listing order."""


def display_name(model: str, treatment: str) -> str:
    """How a model appears in tables: ``model`` alone, or ``model+treatment`` under a stain treatment."""
    return model if treatment == NO_TREATMENT else f"{model}+{treatment}"


def completed_job_dirs(out_dir: Path) -> list[Path]:
    """Job directories with a ``done`` marker, sorted; temporary (dot-prefixed) ones never count.

    Lives here rather than in the runner so that reports build from the files alone, without
    importing torch and the model zoo."""
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


def read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
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


def _environment_columns(cfg: dict) -> dict[str, str]:
    """``env_id`` and ``code_commit`` of a job (empty for jobs written before they were recorded);
    the full records are in ``environments.json`` (:func:`environments`)."""
    record = cfg.get("environment")
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
        record = read_json(job / "config.json").get("environment")
        if not isinstance(record, dict):
            continue
        entry = out.setdefault(env_id(record), {**{k: v for k, v in record.items() if k != "code"},
                                                "jobs": 0, "commits": []})
        entry["jobs"] += 1
        commit = _environment_columns({"environment": record})["code_commit"]
        if commit not in entry["commits"]:
            entry["commits"] = sorted([*entry["commits"], commit])
    return dict(sorted(out.items()))


def evaluated_targets(job_dir: Path) -> dict[str, dict]:
    """Per-target records that ``evaluate`` added to a job (``evaluations/<target>.json``), keyed by
    target name; each has the shape of a ``metrics.json`` target. Temporaries are never read."""
    folder = job_dir / EVALUATIONS_DIR
    out: dict[str, dict] = {}
    for path in sorted(folder.glob("[!.]*.json")) if folder.is_dir() else []:
        obj = read_json(path)
        out[str(_field(obj, "target", path))] = _field(obj, "result", path)
    return out


def target_columns(transform: dict | None) -> dict[str, str]:
    """``target_kind`` and ``target_params`` of a target from its transform (``{"kind": k, **params}``
    or None for images as they are)."""
    if transform is None:
        return {"target_kind": NO_SHIFT, "target_params": "{}"}
    params = {k: v for k, v in transform.items() if k != "kind"}
    return {"target_kind": str(transform["kind"]), "target_params": json.dumps(params, sort_keys=True,
                                                                                separators=(",", ":"))}


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


def job_rows(job_dir: Path) -> list[dict]:
    """The summary rows of one completed job (one per evaluation target)."""
    cfg_path, met_path = job_dir / "config.json", job_dir / "metrics.json"
    cfg, met = read_json(cfg_path), read_json(met_path)
    budget = _field(cfg, "budget", cfg_path)
    if not isinstance(budget, dict) or "name" not in budget:
        raise BenchmarkError(f"{cfg_path}: 'budget' must be an object with a 'name'")
    model = str(_field(cfg, "model", cfg_path))
    treatment = str(cfg.get("treatment", NO_TREATMENT))
    base = {
        "protocol": str(_field(cfg, "protocol", cfg_path)), "model": model, "treatment": treatment,
        "display": display_name(model, treatment), "source": str(_field(cfg, "source", cfg_path)),
        "seed": int(_field(cfg, "seed", cfg_path)), "budget": str(budget["name"]),
        "job_id": str(_field(cfg, "job_id", cfg_path)), "split_hash": str(_field(cfg, "split_hash", cfg_path)),
        **_environment_columns(cfg),
    }
    targets = _field(met, "targets", met_path)
    if not isinstance(targets, dict) or not targets:
        raise BenchmarkError(f"{met_path}: 'targets' must be a non-empty object of per-target results")
    evaluated = evaluated_targets(job_dir)
    clash = sorted(set(evaluated) & set(targets))
    if clash:
        raise BenchmarkError(f"{job_dir / EVALUATIONS_DIR}: target(s) {', '.join(clash)} are also in {met_path}; "
                             "delete the evaluation files")
    targets = {**targets, **evaluated}
    rows = []
    for name in sorted(targets):
        t = targets[name]
        where = f"{met_path} target '{name}'"
        if not isinstance(t, dict) or not isinstance(t.get("metrics"), dict):
            raise BenchmarkError(f"{where}: expected an object with 'metrics'")
        scores = t["metrics"]
        per_class = scores.get("per_class") or {}
        domain = str(_field(t, "domain", where))
        transform = t["transform"] if "transform" in t else \
            legacy_transform(name, base["source"], domain, t.get("severity"))
        row = {
            **base, "target": name, "domain": domain, **target_columns(transform),
            "severity": t.get("severity"), "shifted": name != IN_DOMAIN, "evaluated": name in evaluated,
            "n": int(_field(t, "n", where)),
        }
        for m in METRICS:
            value = scores.get(m)
            if value is not None and not isinstance(value, (int, float)):
                raise BenchmarkError(f"{where}: metric '{m}' is {value!r}, not a number or null")
            row[m] = value
        for c, col in zip(CLASSES, PER_CLASS_F1):
            row[col] = (per_class.get(c) or {}).get("f1")
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
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise BenchmarkError(f"{path}: missing columns {missing}; rebuild it with `report`")
    df = df[list(COLUMNS)].astype(_DTYPES)
    check_split_hashes(df)
    return canonical(df)


def main_report(out_dir: Path) -> int:
    """``report``: summary.csv, tables and figures of a results folder; prints what it wrote.

    Tables and figures are imported here, not at module level, so reading a summary does not
    import matplotlib."""
    from benchmark.figures import write_figures
    from benchmark.provenance import write_provenance
    from benchmark.tables import write_tables

    out_dir = Path(out_dir)
    df = build_summary(out_dir)
    n_jobs = df["job_id"].nunique()
    print(f"{write_summary(df, out_dir / 'summary.csv')}: {len(df)} rows from {n_jobs} completed jobs")
    envs = environments(out_dir)
    write_json(out_dir / "environments.json", envs)
    print(f"{out_dir / 'environments.json'}: {len(envs)} environment(s) ({', '.join(envs) or 'none recorded'})")
    print(*write_provenance(out_dir), sep="\n")
    for path in write_tables(df, out_dir / "tables"):
        print(path)
    for path in write_figures(out_dir, df, out_dir / "figures"):
        print(path)
    return 0
