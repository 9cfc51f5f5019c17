"""Provenance: every dataset behind a results folder, with its version, licence, citation and source.

``run`` records each dataset it loads, once per version, as ``<out>/datasets/<name>@<version>.json``
(a user folder may be gone or renamed by the time of the report), and so does ``report`` for a dataset
only ``evaluate`` added; ``report`` lists every dataset the completed jobs used (their ``config.json``
and each ``evaluations/<target>.json`` name it with its crop-cache version, which for a user folder is
a checksum of its files) in ``datasets.json`` and ``datasets.md``, so whoever reads the tables sees
what data they come from and under which terms it may be used.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from benchmark.atomic import write_json, write_text
from benchmark.summary import EVALUATIONS_DIR, completed_job_dirs, read_json
from core.errors import BenchmarkError
from wbcdata.datasets import dataset_spec, list_datasets
from wbcdata.fetch import DATASET_ARCHIVES, load_manifest
from wbcdata.user import label_report, read_descriptor

RECORDS_DIR = "datasets"


def _archives(name: str) -> list[dict]:
    """Public source of a fetched dataset: each archive's URL, commit and SHA-256 (wbcdata/manifest.json)."""
    archives = load_manifest()["archives"]
    return [{"url": archives[k]["url"], "commit": archives[k]["commit"], "sha256": archives[k]["sha256"]}
            for k in DATASET_ARCHIVES.get(name, ()) if k in archives]


def dataset_record(name: str) -> dict:
    """What a report says about a registered dataset, as loaded in this process."""
    spec = dataset_spec(name)
    record = {"name": name, "version": spec.cache_version, "domains": list(spec.domains),
              "description": spec.description, "licence": spec.licence, "citation": spec.citation, "url": spec.url}
    if spec.fetched:
        record["origin"] = "fetched"
        record["archives"] = _archives(name)
        record["url"] = record["url"] or ", ".join(a["url"] for a in record["archives"])
    elif spec.path:
        desc = read_descriptor(Path(spec.path), name)
        record.update(origin="user folder", path=spec.path,
                      mask_encoding=desc.fmt.mask_values or "default (codes 0/1/2, or grey 0/128/255)",
                      class_map=desc.fmt.class_map, labels=label_report(desc))
    else:
        module = getattr(spec.loader, "__module__", "?")
        record["origin"] = "built-in" if module.startswith("wbcdata.") else f"plugin ({module})"
    return record


def _record_path(out_dir: Path, name: str, version: str) -> Path:
    return Path(out_dir) / RECORDS_DIR / f"{name}@{version}.json"


def record_datasets(out_dir: Path, versions: dict[str, str]) -> None:
    """Write the record of each dataset a sweep loads (name -> crop-cache version), once per version."""
    for name, version in versions.items():
        path = _record_path(out_dir, name, version)
        if not path.exists():
            write_json(path, dataset_record(name))


def _used(out_dir: Path) -> Counter:
    """(dataset, version) -> completed jobs that used it, trained or evaluated on it."""
    used: Counter = Counter()
    for job in completed_job_dirs(out_dir):
        seen: set[tuple[str, str]] = set()
        for path in [job / "config.json", *sorted((job / EVALUATIONS_DIR).glob("[!.]*.json"))]:
            versions = read_json(path).get("data_versions") or {}
            if not isinstance(versions, dict):
                raise BenchmarkError(f"{path}: 'data_versions' must be an object, got {versions!r}")
            seen.update((str(n), str(v)) for n, v in versions.items())
        used.update(seen)
    return used


def provenance(out_dir: Path) -> list[dict]:
    """One record per (dataset, version) the folder's completed jobs used, with their job count: the
    record written by ``run`` (written now from the registry when it has that version and no run did),
    else a stub that says so."""
    records = []
    for (name, version), jobs in sorted(_used(out_dir).items()):
        path = _record_path(out_dir, name, version)
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
