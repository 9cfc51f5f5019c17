"""The ``report`` command's work: ``summary.csv``, ``environments.json``, dataset provenance, tables
and figures of a results folder, all rebuilt from its completed jobs."""
from __future__ import annotations

from pathlib import Path

from benchmark.record.atomic import write_json
from benchmark.record.summary import build_summary, environments, write_summary


def main_report(out_dir: Path) -> int:
    """``report``: summary.csv, tables and figures of a results folder; prints what it wrote.

    Tables and figures are imported here, not at module level, so reading a summary does not
    import matplotlib."""
    from benchmark.reports.figures import write_figures
    from benchmark.reports.provenance import write_provenance
    from benchmark.reports.tables import write_tables

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
