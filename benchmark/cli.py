"""``python -m benchmark <command>``: data, protocols, models, treatments, run, report, hypotheses."""
from __future__ import annotations

import argparse
import sys

from benchmark.budgets import BUDGETS
from core.errors import BenchmarkError


def _cmd_data(rest: list[str]) -> int:
    from wbcdata.fetch import main_data

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


def _cmd_treatments(_: argparse.Namespace) -> int:
    from benchmark.treatments import TREATMENTS, list_treatments

    for name in list_treatments():
        print(f"{name:<24} {TREATMENTS.description(name)}")
    return 0


def _names(arg: str | None, every: list[str]) -> list[str]:
    """A comma-separated CLI list; 'all' means ``every``; empty or absent gives []."""
    if not arg:
        return []
    return list(every) if arg.strip() == "all" else [n.strip() for n in arg.split(",") if n.strip()]


def _cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.budgets import default_budget_name, get_budget
    from benchmark.runner import Sweep, default_workers, run_sweep
    from benchmark.treatments import NO_TREATMENT, list_treatments
    from models import list_models
    from core.study import REFERENCE_MODELS, SG_CLDFF_VARIANTS

    models = _names(args.models, list_models()) or list(SG_CLDFF_VARIANTS)
    models += [m for m in REFERENCE_MODELS if m not in models]
    budget = get_budget(args.budget or default_budget_name())
    out = Path(args.out or f"results/{args.protocol}")
    treatments = _names(args.treatments, list_treatments()) or [NO_TREATMENT]
    sweep = Sweep(args.protocol, models, list(range(args.seeds)), budget, out, treatments=treatments,
                  sources=_names(args.sources, []) or None,
                  model_kwargs={"pretrained": True} if args.pretrained else {})
    run_sweep(sweep, workers=args.jobs or default_workers())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.summary import main_report

    return main_report(Path(args.out))


def _cmd_hypotheses(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.hypotheses import main_hypotheses

    return main_hypotheses(Path(args.out))


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
    sub.add_parser("treatments", help="list registered stain treatments with a one-line description")
    r = sub.add_parser("run", help="train every (model, source, seed) job of a protocol; resumes, skipping done jobs")
    r.add_argument("--protocol", required=True)
    r.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    r.add_argument("--budget", choices=list(BUDGETS), help="default: paper on a GPU, cpu otherwise")
    r.add_argument("--models", help="comma-separated names, or 'all' (default: the four SG-CLDFF variants); "
                   "the training-free floors constant_mask and majority_class are always added")
    r.add_argument("--treatments", help="stain treatments, comma-separated or 'all' (default: none); "
                   "see `python -m benchmark treatments`")
    r.add_argument("--sources", help="only these source domains of the protocol, comma-separated (default: all)")
    r.add_argument("--pretrained", action="store_true",
                   help="start timm backbones from cached ImageNet weights (fails if not cached; default: from scratch)")
    r.add_argument("--out", help="results folder (default results/<protocol>)")
    r.add_argument("--jobs", type=int, help="jobs run in parallel (default: one per CPU core, 1 on a GPU)")
    rep = sub.add_parser("report", help="summary.csv, Markdown/LaTeX tables and figures from a results folder")
    rep.add_argument("--out", required=True, help="results folder, e.g. results/cross_stain")
    hyp = sub.add_parser("hypotheses", help="H1-H4 verdicts (SUPPORTED / RULED OUT / UNDECIDED, Holm per family) "
                         "-> hypotheses.md/json, and the paper's claims vs ours -> claims.md/tex")
    hyp.add_argument("--out", required=True, help="results folder, e.g. results/cross_stain")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] == "data":
            return _cmd_data(argv[1:])
        args = build_parser().parse_args(argv)
        handler = {"protocols": _cmd_protocols, "models": _cmd_models, "treatments": _cmd_treatments, "run": _cmd_run,
                   "report": _cmd_report, "hypotheses": _cmd_hypotheses}[args.command]
        return handler(args)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
