"""The ``report`` command's work: ``summary.csv``, ``environments.json``, dataset provenance, tables
and figures of a results folder, all rebuilt from its completed jobs; a folder with no job folders
(a committed reference) has its tables and figures re-derived from its ``summary.csv``."""
from __future__ import annotations

from pathlib import Path

from benchmark.record.atomic import write_json
from benchmark.record.summary import environments, load_summary, write_summary


def main_report(out_dir: Path) -> int:
    """``report``: summary.csv, tables and figures of a results folder; prints what it wrote.

    Tables and figures are imported here, not at module level, so reading a summary does not
    import matplotlib."""
    from benchmark.reports.figures import write_figures
    from benchmark.reports.provenance import write_provenance
    from benchmark.reports.tables import write_tables

    out_dir = Path(out_dir)
    df, from_jobs = load_summary(out_dir)
    n_jobs = df["job_id"].nunique()
    if from_jobs:
        print(f"{write_summary(df, out_dir / 'summary.csv')}: {len(df)} rows from {n_jobs} completed jobs")
        envs = environments(out_dir)
        write_json(out_dir / "environments.json", envs)
        print(f"{out_dir / 'environments.json'}: {len(envs)} environment(s) ({', '.join(envs) or 'none recorded'})")
        print(*write_provenance(out_dir), sep="\n")
    else:
        print(f"{out_dir / 'summary.csv'}: {len(df)} rows of {n_jobs} jobs, read as they are (no job folders here); "
              f"summary.csv, environments.json and datasets.* kept")
    for path in write_tables(df, out_dir / "tables"):
        print(path)
    for path in write_figures(out_dir, df, out_dir / "figures", from_jobs):
        print(path)
    return 0
