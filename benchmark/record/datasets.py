"""Dataset records: ``<out>/datasets/<name>@<version>.json``, what a results folder says about each
dataset it used (version, licence, citation, source). ``run`` writes one per dataset it loads, once per
version, because a user folder may be gone or renamed by the time of the report."""
from __future__ import annotations

from pathlib import Path

from benchmark.record.atomic import write_json
from wbcdata.datasets import dataset_spec
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


def record_path(out_dir: Path, name: str, version: str) -> Path:
    return Path(out_dir) / RECORDS_DIR / f"{name}@{version}.json"


def record_datasets(out_dir: Path, versions: dict[str, str]) -> None:
    """Write the record of each dataset a sweep loads (name -> crop-cache version), once per version."""
    for name, version in versions.items():
        path = record_path(out_dir, name, version)
        if not path.exists():
            write_json(path, dataset_record(name))
