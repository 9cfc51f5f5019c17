"""The whole CLI's bad-input contract in one place: every command, given an unknown name, a missing or
empty folder, a bad plugin or bad JSON, exits with status 2 and prints one ``error: ...`` line naming the
bad value and the valid choices or the fix -- no traceback, and no results folder begun. Usage errors
(an unknown command, an invalid ``choices`` value such as ``--budget``) are argparse's: SystemExit(2)
and a ``usage:`` line.

Fast: nothing here trains. The one results folder (for ``evaluate`` on a target no job can score) is a
smoke sweep of the training-free floors only, built once. Deeper cases live beside their feature:
tests/test_plugins.py (plugin clashes, broken factories), tests/test_evaluate.py (refused jobs, partial
evaluations), tests/test_user_data.py (bad descriptors and folders)."""
from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli.main import main
from benchmark.engine.treatments import list_treatments
from models import list_models
from protocols import list_protocols
from wbcdata.target_kinds import TARGET_KINDS

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = "cross_stain_synthetic"
FLOORS = "constant_mask,majority_class"
"""The training-free floor models: a sweep of only these trains nothing."""
BAD_PLUGIN = "no_such_module_xyz"
BOOM_PLUGIN = "wbc_cli_test_boom_plugin"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """--plugin and --dataset extend $WBC_PLUGINS / $WBC_DATASETS for worker processes; setenv (unlike
    delenv of an absent variable) restores them, so a bad name cannot leak into the next test."""
    monkeypatch.setenv("WBC_PLUGINS", "")
    monkeypatch.setenv("WBC_DATASETS", "")


def _error(argv: list[str], capsys) -> str:
    """Exit status 2 with a plain ``error:`` message (a BenchmarkError), never a traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


def _usage_error(argv: list[str], capsys) -> str:
    """argparse's own refusal: SystemExit(2) and the usage line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m benchmark" in err
    return err


def _has(text: str, *parts: str) -> None:
    missing = [p for p in parts if p not in text]
    assert not missing, f"{missing} not in: {text}"


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- happy path of each listing command: exit 0, every registered name listed -----------------------

@pytest.mark.parametrize("command, names, known", [
    ("models", list_models, ["sg_cldff", "unet", "constant_mask", "majority_class"]),
    ("protocols", list_protocols, ["cross_stain", "cross_dataset", "within_dataset", PROTOCOL]),
    ("treatments", list_treatments, ["none", "hed", "macenko", "randstainna"]),
    ("targets", TARGET_KINDS.names, ["hed", "restain", "defocus", "jpeg", "gamma", "resample"]),
])
def test_listing_commands_list_every_registered_name(command, names, known, capsys) -> None:
    assert main([command]) == 0
    captured = capsys.readouterr()
    listed = {line.split()[0] for line in captured.out.splitlines() if line and not line[0].isspace()}
    assert set(known) <= set(names()) == listed and captured.err == ""


# --- unknown names ------------------------------------------------------------------------------------

RUN = ["run", "--protocol", PROTOCOL, "--seeds", "1", "--budget", "smoke", "--models", FLOORS, "--jobs", "1"]

UNKNOWN = {
    "protocol (protocols show)": (["protocols", "show", "nope_protocol"],
                                  ["unknown protocol 'nope_protocol'", "valid protocols:", PROTOCOL, "cross_stain,"]),
    "no protocol name (protocols show)": (["protocols", "show"],
                                          ["protocols show needs a protocol name", "protocols show cross_stain"]),
    "source (protocols show)": (["protocols", "show", PROTOCOL, "--sources", "nope_src"],
                                [f"protocol '{PROTOCOL}' has no source nope_src", "its sources: synth_romanowsky",
                                 "--dataset NAME=PATH"]),
    "target (protocols show)": (["protocols", "show", PROTOCOL, "--targets", "nope_tgt"],
                                [f"protocol '{PROTOCOL}' has no target nope_tgt", "synth_rapid", "--dataset NAME=PATH"]),
    "protocol (run)": (["run", "--protocol", "nope_protocol", "--seeds", "1", "--budget", "smoke"],
                       ["unknown protocol 'nope_protocol'", "valid protocols:", PROTOCOL]),
    "model (run)": ([*RUN, "--models", "nope_model"],
                    ["unknown model 'nope_model'", "valid models:", "sg_cldff", "constant_mask", "--plugin MODULE",
                     "MODULE:FACTORY"]),
    "treatment (run)": ([*RUN, "--treatments", "hed,nope_treatment"],
                        ["unknown treatment 'nope_treatment'", "valid treatments:", "macenko", "randstainna"]),
    "source (run)": ([*RUN, "--sources", "nope_src"],
                     [f"protocol '{PROTOCOL}' has no source nope_src", "synth_romanowsky", "--dataset NAME=PATH"]),
    "target (run)": ([*RUN, "--targets", "nope_tgt"],
                     [f"protocol '{PROTOCOL}' has no target nope_tgt", "synth_giemsa", "--dataset NAME=PATH"]),
    "seeds (run)": ([*RUN, "--seeds", "0"], ["--seeds must be at least 1", "got 0"]),
    "jobs (run)": ([*RUN, "--jobs", "0"], ["--jobs must be at least 1", "got 0"]),
    "empty models (run)": ([*RUN, "--models", ""], ["--models was given but names nothing", "leave it out"]),
    "empty sources (run)": ([*RUN, "--sources", ","], ["--sources was given but names nothing"]),
    "model-kwargs not JSON (run)": ([*RUN, "--model-kwargs", "{width: 8"],
                                    ["--model-kwargs is not valid JSON", "'{width: 8'", "--model-kwargs '{\"width\": 8}'"]),
    "model-kwargs not an object (run)": ([*RUN, "--model-kwargs", "[8]"],
                                         ["--model-kwargs must be a JSON object", "'[8]'", "'{\"width\": 8}'"]),
    "target kind (evaluate)": (["evaluate", "--targets", "hed,nope_kind"],
                               ["unknown target(s) nope_kind", "restain", "jpeg", "synthetic"]),
    "no target (evaluate)": (["evaluate", "--targets", ","], ["no targets named", "--targets NAME[,NAME]"]),
    "dataset (data)": (["data", "--datasets", "nope_data"],
                       ["unknown fetched dataset 'nope_data'", "valid: zheng_d1, zheng_d2, bccd, pbc"]),
}


@pytest.mark.parametrize("case", list(UNKNOWN))
def test_unknown_names_exit_2_naming_the_value_and_the_choices(case, tmp_path, capsys) -> None:
    argv, expected = UNKNOWN[case]
    out = tmp_path / "out"
    if argv[0] == "run":
        argv = [*argv, "--out", str(out)]
    elif argv[0] == "evaluate":
        argv = [*argv, "--results", str(out)]
    elif argv[0] == "data":
        argv = [*argv, "--root", str(out)]
    _has(_error(argv, capsys), *expected)
    assert not out.exists(), f"{case}: {sorted(p.name for p in out.rglob('*'))} written after a failure"


@pytest.mark.parametrize("argv, expected", [
    ([], ["the following arguments are required: command"]),
    (["nope_command"], ["invalid choice: 'nope_command'", "'models'", "'evaluate'"]),
    (["protocols", "nope_action"], ["invalid choice: 'nope_action'", "'list', 'show'"]),
    (["run", "--protocol", PROTOCOL, "--budget", "nope_budget"], ["invalid choice: 'nope_budget'", "'smoke'", "'paper'"]),
    (["run", "--protocol", PROTOCOL, "--seeds", "two"], ["--seeds: invalid int value: 'two'"]),
    (["run", "--budget", "smoke"], ["the following arguments are required: --protocol"]),
    (["evaluate", "--results", "x"], ["the following arguments are required: --targets"]),
    (["report"], ["the following arguments are required: --out"]),
    (["hypotheses"], ["the following arguments are required: --out"]),
    (["data", "--nope-option"], ["unrecognized arguments: --nope-option"]),
    (["compare", "--results", "x"], ["the following arguments are required: --reference"]),
], ids=["no command", "unknown command", "protocols action", "budget", "seeds not int", "run without protocol",
        "evaluate without targets", "report without out", "hypotheses without out", "data option",
        "compare without reference"])
def test_usage_errors_are_argparse_exit_2(argv, expected, capsys) -> None:
    """Unknown command, invalid --budget (a ``choices`` option), missing required option: argparse."""
    _has(_usage_error(argv, capsys), *expected)


# --- missing or empty results folder ------------------------------------------------------------------

@pytest.mark.parametrize("command", ["report", "hypotheses", "evaluate"])
@pytest.mark.parametrize("state", ["missing", "empty"])
def test_missing_or_empty_results_folder(command, state, tmp_path, capsys) -> None:
    folder = tmp_path / "results"
    if state == "empty":
        folder.mkdir()
    argv = ["evaluate", "--results", str(folder), "--targets", "hed"] if command == "evaluate" else \
        [command, "--out", str(folder)]
    err = _error(argv, capsys)
    if state == "missing":
        _has(err, f"results folder {folder} does not exist", "--out of a `run`")
    else:
        _has(err, f"no completed jobs in {folder / 'jobs'}", "'done' file", "python -m benchmark run --protocol")
    assert folder.exists() == (state == "empty")  # not created
    assert not folder.exists() or not any(folder.iterdir())  # nor anything written into it


# --- --dataset naming a folder that does not exist ----------------------------------------------------

@pytest.mark.parametrize("command", ["protocols", "run", "report", "evaluate", "data"])
def test_dataset_option_with_a_missing_folder(command, tmp_path, capsys) -> None:
    missing, out = tmp_path / "no_such_lab", tmp_path / "out"
    head = {"protocols": ["protocols", "show", PROTOCOL], "run": [*RUN, "--out", str(out)],
            "report": ["report", "--out", str(out)], "evaluate": ["evaluate", "--results", str(out), "--targets", "hed"],
            "data": ["data", "--root", str(out)]}[command]
    err = _error([*head, "--dataset", f"mylab={missing}"], capsys)
    _has(err, "dataset mylab", f"folder {missing} does not exist", "NAME=PATH", "docs/data.md")
    assert not out.exists()


def test_dataset_option_with_an_empty_folder_asks_for_a_name(tmp_path, capsys) -> None:
    empty = tmp_path / "lab"
    empty.mkdir()
    _has(_error(["protocols", "show", PROTOCOL, "--dataset", str(empty)], capsys),
         f"dataset folder {empty} has no name", f"--dataset NAME={empty}", "dataset.json")


# --- bad plugins: on every command that takes --plugin ------------------------------------------------

def _with_plugin(command: str, out: Path) -> list[str]:
    return {"data": ["data", "--root", str(out)], "protocols": ["protocols"], "models": ["models"],
            "treatments": ["treatments"], "targets": ["targets"], "run": [*RUN, "--out", str(out)],
            "report": ["report", "--out", str(out)],
            "evaluate": ["evaluate", "--results", str(out), "--targets", "hed"],
            "hypotheses": ["hypotheses", "--out", str(out)],
            "compare": ["compare", "--reference", str(out), "--results", str(out)]}[command]


COMMANDS = ["data", "protocols", "models", "treatments", "targets", "run", "report", "evaluate", "hypotheses",
            "compare"]


def test_every_command_is_covered() -> None:
    from benchmark.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_plugin_that_cannot_be_found(command, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    err = _error([*_with_plugin(command, out), "--plugin", BAD_PLUGIN], capsys)
    _has(err, f"plugin '{BAD_PLUGIN}'", "cannot be found", f"no module named '{BAD_PLUGIN}'", "PYTHONPATH",
         "--plugin", "docs/plugins.md")
    assert not out.exists()


@pytest.fixture
def boom_plugin(tmp_path, monkeypatch) -> Path:
    """A plugin module that raises on import, importable from tmp_path."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{BOOM_PLUGIN}.py").write_text("raise RuntimeError('no GPU driver here')\n")
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    return folder


@pytest.mark.parametrize("command", COMMANDS)
def test_plugin_that_raises_on_import(command, boom_plugin, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    err = _error([*_with_plugin(command, out), "--plugin", BOOM_PLUGIN], capsys)
    _has(err, f"plugin '{BOOM_PLUGIN}'", "failed while importing: RuntimeError: no GPU driver here",
         f"{BOOM_PLUGIN}.py:1", "fix the plugin", "docs/plugins.md")
    assert not out.exists()


def test_plugin_that_raises_on_import_in_a_real_process(boom_plugin) -> None:
    """The entry point itself (``python -m benchmark``): status 2, one error line, no traceback."""
    env = {k: v for k, v in os.environ.items() if k not in ("WBC_PLUGINS", "WBC_DATASETS")}
    proc = subprocess.run([sys.executable, "-m", "benchmark", "models", "--plugin", BOOM_PLUGIN], cwd=ROOT,
                          env={**env, "PYTHONPATH": str(boom_plugin)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: plugin '{BOOM_PLUGIN}'") and "Traceback" not in proc.stderr, proc.stderr


# --- evaluate: a target no job can score ----------------------------------------------------------------

@pytest.fixture(scope="module")
def floors(tmp_path_factory) -> Path:
    """A finished smoke sweep of the two training-free floors on one source: trains nothing (~2 s)."""
    out = tmp_path_factory.mktemp("floors")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WBC_PLUGINS", "")
        mp.setenv("WBC_DATASETS", "")
        assert main([*RUN, "--out", str(out)]) == 0
    assert len(list((out / "jobs").iterdir())) == 2
    return out


def test_evaluate_a_target_no_job_can_score(floors, capsys) -> None:
    before = _digests(floors)
    err = _error(["evaluate", "--results", str(floors), "--targets", "synthetic"], capsys)
    _has(err, f"nothing in {floors} could be scored on synthetic", "constant_mask__", "majority_class__",
         "dataset 'synthetic' holds", "it is the job's source", "'in_domain' target already")
    assert _digests(floors) == before and not (floors / "summary.csv").exists()


def test_evaluate_unknown_target_on_a_real_folder_writes_nothing(floors, capsys) -> None:
    before = _digests(floors)
    _has(_error(["evaluate", "--results", str(floors), "--targets", "nope_kind"], capsys),
         "unknown target(s) nope_kind", "hed", "restain")
    assert _digests(floors) == before


def test_report_with_a_missing_dataset_folder_writes_nothing(floors, tmp_path, capsys) -> None:
    """Was exit 0, the bad --dataset silently ignored, the report written."""
    before = _digests(floors)
    _has(_error(["report", "--out", str(floors), "--dataset", str(tmp_path / "gone")], capsys), "does not exist")
    assert _digests(floors) == before and not (floors / "summary.csv").exists()
