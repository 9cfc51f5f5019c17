"""Carry an unfinished sweep to another machine or session: pack its finished job folders into one
archive small enough for git, and unpack it into a run folder, where the runner then skips those jobs.

    .venv/bin/python scripts/carry_sweep.py pack runs/cross_stain results/in_progress/cross_stain.tar.xz
    .venv/bin/python scripts/carry_sweep.py unpack results/in_progress/cross_stain.tar.xz runs/cross_stain
    .venv/bin/python scripts/carry_sweep.py pack runs/cross_stain results/in_progress/cross_stain.2.tar.xz \
        --skip results/in_progress/cross_stain.tar.xz   # only the jobs finished since: git keeps each blob

Why: the committed 15-seed cross_stain (330 jobs) takes longer on 2 cores than a working session
lasts, and git is the only thing a new session's machine shares with the last one. Maintainers only.

What is packed: ``splits/``, ``datasets/`` and every completed job folder, less each job's
``weights.safetensors`` (9 MB; only ``evaluate`` reads it, and a published folder has no jobs) and
``explain_examples.npz`` (1 MB). The full model's lowest-seed untreated jobs (per source), whose explanation
examples the figure reads, are left out whole: the resumed run trains them again (2 minutes each).
Predictions go in uncompressed, so that xz shares the masks that repeat across jobs (about 40 KB a
job instead of 150). Unpacking re-gzips them (same lines, so the same figures), checks that the split
manifests and dataset records equal any already there, and writes each job through a temporary
folder renamed into place (the runner clears one a killed unpack left). A job folder already done
there is left alone. Only regular files under those three folders are read from an
archive; any other member is refused.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import lzma
import os
import shutil
import sys
import tarfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.record.jobs import JobConfig, completed_job_dirs  # noqa: E402

WEIGHTS = "weights.safetensors"
EXPLAIN = "explain_examples.npz"
PREDICTIONS = "predictions.jsonl.gz"
SHARED = ("splits", "datasets")


def explained_jobs(jobs: list[Path]) -> set[Path]:
    """The full model's untreated jobs at the lowest seed of each protocol, budget and source: those
    whose ``explain_examples.npz`` the explanation figure may read."""
    configs = ((j, JobConfig.read(j)) for j in jobs)
    full = {job: c for job, c in configs if c.model == "sg_cldff" and c.treatment == "none"}
    lowest: dict[tuple, int] = {}
    for c in full.values():
        key = (c.protocol, c.budget_name, c.source)
        lowest[key] = min(lowest.get(key, c.seed), c.seed)
    return {job for job, c in full.items() if c.seed == lowest[(c.protocol, c.budget_name, c.source)]}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644  # mtime 0, no owner: the same jobs give the same archive
    tar.addfile(info, io.BytesIO(data))


def carried_jobs(archive: Path) -> set[str]:
    """The job folders an archive holds (its CARRIED.json)."""
    try:
        with tarfile.open(archive, "r:xz") as tar:
            return set(json.loads(tar.extractfile("CARRIED.json").read())["jobs"])
    except (OSError, KeyError, ValueError, tarfile.TarError, lzma.LZMAError, EOFError) as e:
        raise SystemExit(f"{archive}: not a readable sweep archive ({type(e).__name__}: {e})") from e


def pack(run: Path, archive: Path, skip: list[Path] = ()) -> int:
    packed = set().union(*(carried_jobs(a) for a in skip))
    done = completed_job_dirs(run)
    left_out = explained_jobs(done)
    jobs = [j for j in done if j.name not in packed and j not in left_out]
    if not jobs:
        raise SystemExit(f"{run}: no completed job folders to pack"
                         f"{' beyond those in ' + ', '.join(map(str, skip)) if skip else ''}")
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp-{os.getpid()}")
    with lzma.open(tmp, "wb", preset=9 | lzma.PRESET_EXTREME) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
        for folder in SHARED:
            for f in sorted((run / folder).rglob("*")) if (run / folder).is_dir() else []:
                if f.is_file():
                    _add(tar, f.relative_to(run).as_posix(), f.read_bytes())
        for job in jobs:
            files = sorted(f for f in job.rglob("*") if f.is_file() and f.name != "done")
            for f in files:
                rel = f.relative_to(run).as_posix()
                if f.name in (WEIGHTS, EXPLAIN):
                    continue
                if f.name.endswith(".jsonl.gz"):
                    with gzip.open(f, "rb") as g:
                        _add(tar, rel[: -len(".gz")], g.read())
                else:
                    _add(tar, rel, f.read_bytes())
            _add(tar, (job / "done").relative_to(run).as_posix(), (job / "done").read_bytes())
        _add(tar, "CARRIED.json", json.dumps({"jobs": [j.name for j in jobs]}, indent=1).encode())
    tmp.replace(archive)
    print(f"{archive}: {len(jobs)} job folders from {run}, {archive.stat().st_size / 1e6:.1f} MB "
          f"(left out for the rerun: {', '.join(sorted(j.name for j in left_out)) or 'none'})")
    return 0


def _checked_name(member: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    path = PurePosixPath(member.name)
    if (not member.isfile() or path.is_absolute() or ".." in path.parts
            or (path.parts[0] not in (*SHARED, "jobs") and member.name != "CARRIED.json")
            or (path.parts[0] == "jobs" and (len(path.parts) < 3 or path.parts[1].startswith(".")))):
        raise SystemExit(f"{archive}: refused member {member.name!r} (only files under splits/, datasets/ "
                         "and jobs/<job>/ are unpacked)")
    return path


def unpack(archive: Path, run: Path) -> int:
    try:
        tar = tarfile.open(archive, "r:xz")
        members = [(_checked_name(m, archive), m) for m in tar.getmembers()]
    except (OSError, tarfile.TarError, lzma.LZMAError, EOFError) as e:
        raise SystemExit(f"{archive}: not a readable sweep archive ({type(e).__name__}: {e})") from e
    by_job: dict[str, list[tuple[PurePosixPath, tarfile.TarInfo]]] = {}
    with tar:
        for path, m in members:
            if path.parts[0] in SHARED:
                data, dest = tar.extractfile(m).read(), run.joinpath(*path.parts)
                if dest.exists() and dest.read_bytes() != data:
                    raise SystemExit(f"{dest} differs from the archive's: not the same protocol's splits or data")
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
                tmp.write_bytes(data)
                tmp.replace(dest)
            elif path.parts[0] == "jobs":
                by_job.setdefault(path.parts[1], []).append((path, m))
        added = 0
        for name, files in sorted(by_job.items()):
            final = run / "jobs" / name
            if (final / "done").exists():
                continue
            if final.exists():
                raise SystemExit(f"{final} exists without a done marker: delete it to unpack the archive's copy")
            tmp = run / "jobs" / f".{name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            for path, m in sorted(files, key=lambda pm: pm[0].name == "done"):
                data = tar.extractfile(m).read()
                dest = tmp.joinpath(*path.parts[2:])
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.name.endswith(".jsonl"):
                    with gzip.GzipFile(dest.with_name(dest.name + ".gz"), "wb", mtime=0) as g:
                        g.write(data)
                else:
                    dest.write_bytes(data)
            if not (tmp / "done").exists():
                shutil.rmtree(tmp)
                raise SystemExit(f"{archive}: job {name} has no done marker; nothing of it was unpacked")
            tmp.rename(final)
            added += 1
    print(f"{run}: {added} job folders unpacked from {archive} ({len(by_job) - added} already there)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack", help="run folder -> archive")
    a.add_argument("run", type=Path)
    a.add_argument("archive", type=Path)
    a.add_argument("--skip", type=Path, action="append", default=[],
                   help="an earlier archive of this run: its jobs are not packed again (repeatable)")
    b = sub.add_parser("unpack", help="archive -> run folder")
    b.add_argument("archive", type=Path)
    b.add_argument("run", type=Path)
    args = p.parse_args(argv)
    return pack(args.run, args.archive, args.skip) if args.command == "pack" else unpack(args.archive, args.run)


if __name__ == "__main__":
    sys.exit(main())
