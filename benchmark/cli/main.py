"""``python -m benchmark <command>``: data, protocols, models, treatments, targets, run, report, evaluate,
hypotheses, compare."""
from __future__ import annotations

import argparse
import os
import sys

from benchmark.engine.budgets import BUDGETS
from core.errors import BenchmarkError
from core.catalogue import BUILTIN_MODELS, BUILTIN_PROTOCOLS, BUILTIN_TREATMENTS
from core.isa import pin_mode


def _cmd_data(rest: list[str]) -> int:
    from benchmark.cli.data import main_data

    return main_data(rest)


def _cmd_protocols(args: argparse.Namespace) -> int:
    from protocols import get_protocol, list_protocols

    if args.action == "list":
        for name in list_protocols():
            print(f"{name:<26} {get_protocol(name).description}")
        return 0
    if not args.name:
        raise BenchmarkError("protocols show needs a protocol name, e.g. `protocols show cross_stain --seed 0`")
    from benchmark.cli.protocols import describe_split
    from protocols.resolve import load_by_domain, resolve_splits, select

    extension, sources = select(args.name, _names(args.sources, []) or None, _names(args.targets, []))
    by_domain = load_by_domain(args.name, args.size, extension)
    by_id = {s.id: s for samples in by_domain.values() for s in samples}
    for split in resolve_splits(args.name, args.seed, by_domain, extension=extension, sources=sources):
        print(describe_split(split, by_id))
    return 0


def _cmd_models(_: argparse.Namespace) -> int:
    from models import MODELS, list_models
    from models.registry import model_info

    for name in list_models():
        info = model_info(name)
        sizes = f">={info.min_size}px" + (f" x{info.size_multiple}" if info.size_multiple > 1 else "")
        print(f"{name:<24} {'+'.join(info.heads):<21} {sizes:<11} {MODELS.description(name)}")
    return 0


def _cmd_targets(_: argparse.Namespace) -> int:
    from wbcdata.target_kinds import TARGET_KINDS, get_target_kind

    for name in TARGET_KINDS.names():
        kind = get_target_kind(name)
        grades = "; ".join(f"{s:g}: " + ", ".join(f"{k}={v}" for k, v in p.items()) for s, p in kind.grades)
        print(f"{name:<10} {kind.family:<12} {TARGET_KINDS.description(name)}")
        print(f"{'':<23} severities: {grades or 'none (one target per other domain)'}")
    return 0


def _cmd_treatments(_: argparse.Namespace) -> int:
    from benchmark.engine.treatments import TREATMENTS, list_treatments

    for name in list_treatments():
        print(f"{name:<24} {TREATMENTS.description(name)}")
    return 0


def _names(arg: str | None, every: list[str], option: str = "") -> list[str]:
    """A comma-separated CLI list; 'all' means ``every``; absent gives []. Given but empty (``--models ""``,
    an unset shell variable) is an error when ``option`` names it, so it never falls back to a default run."""
    if arg is None:
        return []
    names = list(every) if arg.strip() == "all" else [n.strip() for n in arg.split(",") if n.strip()]
    if not names and option:
        raise BenchmarkError(f"{option} was given but names nothing ({arg!r}); leave it out for the default")
    return names


def _cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.engine.names import check_builtin_names
    from core.study import REFERENCE_MODELS, SG_CLDFF_VARIANTS
    from protocols.resolve import select

    if args.seeds < 1:  # else nothing runs, exit 0, and the results folder is begun
        raise BenchmarkError(f"--seeds must be at least 1 (it runs seeds 0..N-1), got {args.seeds}")
    if args.jobs is not None and args.jobs < 1:
        raise BenchmarkError(f"--jobs must be at least 1, got {args.jobs}")
    # names first, before torch and the model zoo load: a misspelt one is answered at once
    sources, targets = _names(args.sources, [], "--sources") or None, _names(args.targets, [], "--targets")
    extension = select(args.protocol, sources, targets)[0]
    every_model, every_treatment = (args.models or "").strip() == "all", (args.treatments or "").strip() == "all"
    check_builtin_names([] if every_model else _names(args.models, [], "--models"),
                        [] if every_treatment else _names(args.treatments, [], "--treatments"), args.launcher)

    from benchmark.engine.budgets import default_budget_name, get_budget
    from benchmark.engine.devices import CUDA_DETERMINISM_ENV, resolve_device
    from benchmark.engine.plan import Sweep
    from benchmark.engine.sweep import run_sweep
    from benchmark.engine.treatments import list_treatments
    from benchmark.record.vocabulary import NO_TREATMENT
    from models import list_models

    device = resolve_device(args.device)
    if args.cuda_determinism is not None:  # the workers, spawned or Ray's, inherit the environment
        os.environ[CUDA_DETERMINISM_ENV] = "1" if args.cuda_determinism == "on" else "0"
    models = _names(args.models, list_models(), "--models") or list(SG_CLDFF_VARIANTS)
    models += [m for m in REFERENCE_MODELS if m not in models]
    budget = get_budget(args.budget or default_budget_name(device))
    out = Path(args.out or f"{RUNS_DIR}/{extension.name if extension else args.protocol}")
    treatments = _names(args.treatments, list_treatments(), "--treatments") or [NO_TREATMENT]
    options = {**({"pretrained": True} if args.pretrained else {}), **_json_object(args.model_kwargs, "--model-kwargs")}
    sweep = Sweep(args.protocol, models, list(range(args.seeds)), budget, out, treatments=treatments,
                  sources=sources, targets=targets,
                  model_kwargs=options)
    run_sweep(sweep, workers=args.jobs, device=device, launcher=args.launcher, ray_address=args.ray_address)
    return 0


def _json_object(text: str | None, option: str) -> dict:
    """A CLI option holding a JSON object; absent gives {}."""
    import json

    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"{option} is not valid JSON ({e}): {text!r}; e.g. {option} '{{\"width\": 8}}'") from e
    if not isinstance(value, dict):
        raise BenchmarkError(f"{option} must be a JSON object of options, got {text!r}; e.g. {option} '{{\"width\": 8}}'")
    return value


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.reports.report import main_report

    return main_report(Path(args.out))


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: score, print what was refused and why, rebuild the report. A BenchmarkError
    (exit status 2) when nothing could be scored or when a requested target no job can score."""
    from pathlib import Path

    from benchmark.engine.names import check_target_names

    out_dir, names = Path(args.results), _names(args.targets, [])
    check_target_names(names)  # before torch loads: a misspelt target is answered at once
    from benchmark.engine.evaluate import evaluate_results
    from benchmark.reports.report import main_report

    run = evaluate_results(out_dir, names, args.jobs, args.device,
                           allowed=frozenset(_names(",".join(args.allow_model or []), [])))
    refusals = "\n".join(f"  {job} [{'every target' if t == '*' else t}]: {why}" for job, t, why in run.refused)
    if not run.scored and not run.skipped:
        raise BenchmarkError(f"nothing in {out_dir} could be scored on {', '.join(names)}; refused:\n{refusals}")
    if run.refused:
        print(f"refused {len(run.refused)} (job, target) pair(s):\n{refusals}")
    print(f"scored {len(run.scored)} (job, target) pair(s), {len(run.skipped)} already scored")
    main_report(out_dir)
    if run.untrusted:
        raise BenchmarkError(f"{len(run.untrusted)} job(s) were not scored because their model must be named on the "
                             f"command line first (--plugin, or --allow-model for a dotted path; reasons above); "
                             f"the other jobs were scored and the report rebuilt")
    uncovered = [n for n in names if not run.covered(n)]
    if uncovered:
        raise BenchmarkError(f"no job could score target(s) {', '.join(uncovered)} (reasons above); "
                             f"the other targets were scored and the report rebuilt")
    return 0


def _cmd_hypotheses(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.reports.hypotheses import main_hypotheses

    return main_hypotheses(Path(args.out))


def _cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.analysis.compare import main_compare

    return main_compare(Path(args.reference), Path(args.results), args.sets)


def _dataset_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=PATH",
                        help="a folder of your own WBC images as dataset NAME (repeatable; PATH alone takes the name "
                        "from its dataset.json); extends $WBC_DATASETS, see docs/data.md")


def _plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first, so its models, datasets, treatments, protocols and target kinds "
                        "are registered (repeatable, or comma-separated; also $WBC_PLUGINS=a,b); see docs/plugins.md")


def _plugin_parser() -> argparse.ArgumentParser:
    """``--plugin`` alone, to take it off the arguments ``data`` parses itself."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _plugin_option(p)
    return p


def _load_plugins(modules: list[str]) -> None:
    """Load ``--plugin`` modules in this process, and name them in the environment spawned workers inherit."""
    if modules:
        from core.plugins import add_plugins

        add_plugins(modules)


RUNS_DIR = "runs"
"""Where a run writes by default: not ``results/``, whose committed reference folders a user's first
run must not overwrite (README; ``make benchmark`` too)."""

DEVICE_HELP = "cpu, cuda or cuda:N (default: cuda when present, cpu otherwise); a device this machine lacks is an error"


def _run_parser(sub) -> None:
    r = sub.add_parser("run", help="train every (model, source, seed) job of a protocol; resumes, skipping done jobs")
    r.add_argument("--protocol", required=True, help=f"one of {', '.join(BUILTIN_PROTOCOLS)}, or a plugin's "
                   "(`python -m benchmark protocols` describes each)")
    r.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    r.add_argument("--budget", choices=list(BUDGETS), help="default: paper on a GPU, cpu otherwise")
    r.add_argument("--models", help=f"comma-separated names of {', '.join(BUILTIN_MODELS)}, a plugin's model or a "
                   "dotted path MODULE:FACTORY, or 'all' (default: the four SG-CLDFF variants); the training-free "
                   "floors constant_mask and majority_class are always added; see `python -m benchmark models`")
    r.add_argument("--treatments", help=f"stain treatments, comma-separated ({', '.join(BUILTIN_TREATMENTS)}) or "
                   "'all' (default: none); see `python -m benchmark treatments`")
    r.add_argument("--sources", help="only these source datasets or domains, comma-separated (default: the protocol's); "
                   "a dataset the protocol does not train on, e.g. one named with --dataset, is added")
    r.add_argument("--targets", help="datasets added as test targets of every split, their images as they are "
                   "(cross_stain also re-stains into their stain), comma-separated; e.g. --sources zheng_d1 --targets mylab. "
                   "Extra sources or targets make the protocol's variant <protocol>+<domain>..., "
                   "with its own splits and default --out")
    _dataset_option(r)
    r.add_argument("--model-kwargs", metavar="JSON",
                   help="options for every model but the floors, a JSON object, e.g. '{\"width\": 8}'; part of the job "
                   "hash and named in the job folder")
    r.add_argument("--pretrained", action="store_true",
                   help="start timm backbones from cached ImageNet weights (fails if not cached; default: from scratch)")
    r.add_argument("--out", help=f"results folder (default {RUNS_DIR}/<protocol>; the committed reference folders "
                   "in results/ are never written by default)")
    r.add_argument("--jobs", type=int, help="jobs run in parallel (default: one per CPU core; on a GPU as many as "
                   "its free memory takes at the jobs' measured peak, see docs/gpu.md)")
    r.add_argument("--device", help=DEVICE_HELP)
    r.add_argument("--cuda-determinism", choices=("on", "off"),
                   help="on a GPU: deterministic cuDNN kernels (on, the default) or autotuned ones (off: faster, "
                        "not bit-reproducible; each job's config.json records which); no effect on a CPU")
    r.add_argument("--launcher", default="local",
                   help="a registered launcher (default local): local, this process or a process pool on this host; "
                   "ray, one Ray task per job, on a local Ray instance or the cluster at --ray-address "
                   "(docs/cluster.md); a plugin may register more")
    r.add_argument("--ray-address", help="join this Ray cluster (HOST:PORT or 'auto') instead of starting a local "
                   "instance; --out must be on a file system every node shares")


def _results_parsers(sub) -> None:
    """The commands that read a results folder: report, evaluate, hypotheses, compare."""
    rep = sub.add_parser("report", help="summary.csv, Markdown/LaTeX tables and figures from a results folder")
    rep.add_argument("--out", required=True, help="results folder, e.g. results/cross_stain")
    _dataset_option(rep)
    ev = sub.add_parser("evaluate", help="score every finished job of a results folder on new targets from its saved "
                        "weights, without retraining; then rebuild summary.csv, tables and figures")
    ev.add_argument("--results", required=True, help="results folder, e.g. results/cross_stain")
    ev.add_argument("--targets", required=True, help="comma-separated datasets (all their images) or target kinds "
                    "(hed, restain, defocus, jpeg, gamma, resample, ...: applied to each job's held-out in-domain "
                    "images); see `python -m benchmark targets`")
    ev.add_argument("--jobs", type=int, default=1, help="jobs scored in parallel processes (default 1)")
    ev.add_argument("--allow-model", action="append", metavar="MODULE:FACTORY",
                    help="a dotted-path model the folder's jobs name that you trust to be imported (repeatable, or "
                    "comma-separated); without it such jobs are refused: a results folder never chooses what code "
                    "runs (docs/trust.md)")
    ev.add_argument("--device", help=DEVICE_HELP)
    _dataset_option(ev)
    hyp = sub.add_parser("hypotheses", help="H1-H4 verdicts (SUPPORTED / RULED OUT / UNDECIDED, Holm per family) "
                         "-> hypotheses.md/json, and the paper's claims vs ours -> claims.md/tex")
    hyp.add_argument("--out", required=True, help="results folder, e.g. results/cross_stain")
    cmp = sub.add_parser("compare", help="does a rerun reproduce a results folder? bit-identical rows, drift per model "
                         "and target, verdicts per seed set side by side (Markdown on stdout, nothing written)")
    cmp.add_argument("--reference", required=True, help="results folder to compare against, e.g. results/cross_stain")
    cmp.add_argument("--results", required=True, help="the rerun's results folder (its summary.csv)")
    cmp.add_argument("--sets", help="seed sets decided separately, e.g. 0-4,5-9 (the shared seeds as a whole always)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("data", help="fetch and verify the datasets (see `data --help`)", add_help=False)
    pr = sub.add_parser("protocols", help="list protocols, or show one's split sizes per domain and class")
    pr.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    pr.add_argument("name", nargs="?")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--size", type=int, default=64, help="crop size used to load images (pHash check)")
    pr.add_argument("--sources", help="only these source datasets or domains, comma-separated (as `run`)")
    pr.add_argument("--targets", help="datasets added as test targets, comma-separated (as `run`)")
    _dataset_option(pr)
    sub.add_parser("models", help="list registered models with a one-line description")
    sub.add_parser("treatments", help="list registered stain treatments with a one-line description")
    sub.add_parser("targets", help="list registered target kinds (stain and scanner shifts) with their severities")
    _run_parser(sub)
    _results_parsers(sub)
    for name, subparser in sub.choices.items():  # every subcommand, so one added later takes --plugin too
        if name != "data":  # `data` parses its own arguments; main() takes --plugin off them
            _plugin_option(subparser)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        pin_mode()  # a misspelt $WBC_CPU_ISA is named before anything runs (the package import pinned anyway)
        if argv and argv[0] == "data":
            known, rest = _plugin_parser().parse_known_args(argv[1:])
            _load_plugins(known.plugin)
            return _cmd_data(rest)
        args = build_parser().parse_args(argv)
        _load_plugins(args.plugin)
        if getattr(args, "dataset", None):
            from wbcdata.datasets import list_datasets
            from wbcdata.user import add_datasets

            add_datasets(args.dataset)
            list_datasets()  # registers the folders now: a bad one fails here, even where no dataset is read (report)
        handler = {"protocols": _cmd_protocols, "models": _cmd_models, "treatments": _cmd_treatments,
                   "targets": _cmd_targets, "run": _cmd_run,
                   "report": _cmd_report, "evaluate": _cmd_evaluate, "hypotheses": _cmd_hypotheses,
                   "compare": _cmd_compare}[args.command]
        return handler(args)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
