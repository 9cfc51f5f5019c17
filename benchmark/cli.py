"""``python -m benchmark <command>``: data, protocols, models, run, report, hypotheses."""
from __future__ import annotations

import argparse
import sys

from benchmark.errors import BenchmarkError


def _cmd_data(rest: list[str]) -> int:
    from benchmark.data.fetch import main_data

    return main_data(rest)


def _cmd_protocols(args: argparse.Namespace) -> int:
    from protocols import get_protocol, list_protocols

    if args.action == "list":
        for name in list_protocols():
            print(f"{name:<26} {get_protocol(name).description}")
        return 0
    if not args.name:
        raise BenchmarkError("protocols show needs a protocol name, e.g. `protocols show cross_stain --seed 0`")
    from benchmark.protocol_summary import describe_split
    from protocols.resolve import load_by_domain, resolve_splits

    by_domain = load_by_domain(args.name, args.size)
    by_id = {s.id: s for samples in by_domain.values() for s in samples}
    for split in resolve_splits(args.name, args.seed, by_domain):
        print(describe_split(split, by_id))
    return 0


def _cmd_models(_: argparse.Namespace) -> int:
    from models import MODELS, list_models

    for name in list_models():
        print(f"{name:<24} {MODELS.description(name)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("data", help="fetch and verify the datasets (see `data --help`)", add_help=False)
    pr = sub.add_parser("protocols", help="list protocols, or show one's split sizes per domain and class")
    pr.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    pr.add_argument("name", nargs="?")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--size", type=int, default=64, help="crop size used to load images (pHash check)")
    sub.add_parser("models", help="list registered models with a one-line description")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] == "data":
            return _cmd_data(argv[1:])
        args = build_parser().parse_args(argv)
        handler = {"protocols": _cmd_protocols, "models": _cmd_models}[args.command]
        return handler(args)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
