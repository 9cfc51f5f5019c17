"""Provenance: every dataset behind a results folder, with its version, licence, citation and source.

``run`` records each dataset it loads, once per version (``benchmark.record.datasets``), and so does
``report`` for a dataset only ``evaluate`` added; ``report`` lists every dataset the completed jobs used (their ``config.json``
and each ``evaluations/<target>.json`` name it with its crop-cache version, which for a user folder is
a checksum of its files) in ``datasets.json`` and ``datasets.md``, so whoever reads the tables sees
what data they come from and under which terms it may be used.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from benchmark.record.atomic import write_json, write_text
from benchmark.record.datasets import record_datasets, record_path
from benchmark.record.jobs import Evaluation, JobConfig, completed_job_dirs, evaluation_files
from wbcdata.datasets import dataset_spec, list_datasets


def _used(out_dir: Path) -> Counter:
    """(dataset, version) -> completed jobs that used it, trained or evaluated on it."""
    used: Counter = Counter()
    for job in completed_job_dirs(out_dir):
        seen: set[tuple[str, str]] = set()
        for versions in [JobConfig.read(job).data_versions,
                         *(Evaluation.read(p).data_versions for p in evaluation_files(job))]:
            seen.update((str(n), str(v)) for n, v in versions.items())
        used.update(seen)
    return used


def provenance(out_dir: Path) -> list[dict]:
    """One record per (dataset, version) the folder's completed jobs used, with their job count: the
    record written by ``run`` (written now from the registry when it has that version and no run did),
    else a stub that says so."""
    records = []
    for (name, version), jobs in sorted(_used(out_dir).items()):
        path = record_path(out_dir, name, version)
        if not path.exists() and name in list_datasets() and dataset_spec(name).cache_version == version:
            record_datasets(out_dir, {name: version})
        if path.exists():
            record = json.loads(path.read_text())
        else:
            record = {"name": name, "version": version,
                      "note": "not recorded by the run, and not registered with this version now"}
        records.append({**record, "jobs": jobs})
    return records


def _cell(text: object) -> str:
    return str(text or "—").replace("|", "\\|").replace("\n", " ")


def render_markdown(records: list[dict]) -> str:
    lines = ["# Datasets", "", "Every dataset the completed jobs of this folder used. Version: the crop-cache "
             "version (for a user folder, with a SHA-256 of its files); archives: the SHA-256 of each fetched archive.", ""]
    if not records:
        return "\n".join(lines + ["No job records its datasets (jobs made before data versions were recorded).", ""])
    lines += ["| dataset | version | origin | jobs | licence | citation | source |", "|:--|:--|:--|--:|:--|:--|:--|"]
    for r in records:
        source = r.get("path") or r.get("url") or ""
        lines.append(f"| {_cell(r['name'])} | {_cell(r['version'])} | {_cell(r.get('origin'))} | {r['jobs']} | "
                     f"{_cell(r.get('licence'))} | {_cell(r.get('citation'))} | {_cell(source)} |")
    notes = [f"- {r['name']}: dropped by its class map: "
             + ", ".join(f"{n} '{label}'" for label, n in r["labels"]["dropped"].items())
             for r in records if (r.get("labels") or {}).get("dropped")]
    notes += [f"- {r['name']}: {r['note']}" for r in records if r.get("note")]
    return "\n".join(lines + ([""] + notes if notes else []) + [""])


def write_provenance(out_dir: Path) -> list[Path]:
    """``datasets.json`` and ``datasets.md`` of a results folder; returns both paths."""
    out_dir = Path(out_dir)
    records = provenance(out_dir)
    write_json(out_dir / "datasets.json", records)
    write_text(out_dir / "datasets.md", render_markdown(records))
    return [out_dir / "datasets.json", out_dir / "datasets.md"]
