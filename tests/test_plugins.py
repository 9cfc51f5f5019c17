"""Plugins and dotted-path models, through the CLI: the example package end to end (installed, and
named by --plugin with worker processes), job names with options, and a clear error (exit code 2,
the plugin named, the fix) for each way a plugin can be wrong.

The runs that load a plugin successfully happen in subprocesses, so no plugin model stays
registered in this process for the tests that iterate over every registered model."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from benchmark.engine.budgets import get_budget
from benchmark.cli.main import main
from benchmark.engine.plan import Job

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "wbc_example_plugin"
PROTOCOL = "cross_stain_synthetic"
MODEL = "example_tiny_unet"
SMOKE_RUN = ("run", "--protocol", PROTOCOL, "--seeds", "1", "--budget", "smoke")


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("WBC_PLUGINS", "PYTHONPATH")}
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=600)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, capture_output=True, timeout=300)


def _displays(out: Path) -> set[str]:
    return set(pd.read_csv(out / "summary.csv")["display"])


# --- job names: unchanged without options, options and dotted paths made folder-safe ----------------

CROSS_STAIN_VERSIONS = {"bccd": "v1", "pbc": "v1-od-line-1", "zheng_d1": "v1", "zheng_d2": "v1"}


def _job(model: str = "sg_cldff", treatment: str = "none", **options) -> Job:
    return Job("cross_stain", model, "zheng_d1", 0, get_budget("cpu"), "64884f9c5e41ee11", options, treatment,
               CROSS_STAIN_VERSIONS)


def test_jobs_without_options_keep_their_id_and_folder() -> None:
    """Resuming relies on both: a job's id is a pure function of its config. Under engine version 3
    these were 742a66cf4a4d (in results/cross_stain/summary.csv, issue 9's sweep) and 3d0f19263d83;
    engine version 4 (augmentation on the device, issue 18) changed them, as it changed the numbers."""
    assert (_job().id, _job().dirname) == ("f76c98073eac", "sg_cldff__zheng_d1__seed0__f76c98073eac")
    treated = _job(treatment="macenko")
    assert (treated.id, treated.dirname) == ("457704a9927c", "sg_cldff+macenko__zheng_d1__seed0__457704a9927c")


def test_options_and_dotted_paths_in_the_job_folder() -> None:
    job = _job(width_mult=0.5, norm="group")
    assert job.id != _job().id
    assert job.dirname == f"sg_cldff@norm=group,width_mult=0.5__zheng_d1__seed0__{job.id}"
    dotted = _job("mylab.nets:tiny", depths=[1, 2])
    assert dotted.dirname == f"mylab.nets-tiny@depths=-1,2-__zheng_d1__seed0__{dotted.id}"
    assert "@" in _job(note="x" * 500).dirname and len(_job(note="x" * 500).dirname) < 120


# --- the example package, end to end through the CLI -------------------------------------------------

def test_installed_example_plugin_runs_and_reports_through_the_cli(tmp_path) -> None:
    """Installed with pip (its entry point registers the model in every process that asks a registry),
    named by registry name and by dotted path, with options; its rows reach summary.csv and the tables."""
    out = tmp_path / "res"
    dotted = "wbc_example_plugin.model:example_tiny_unet"
    _pip("install", "--no-deps", "--no-build-isolation", "-e", str(EXAMPLE))
    try:
        _ok(_cli(*SMOKE_RUN, "--models", f"{MODEL},{dotted}", "--model-kwargs", '{"width": 4}',
                 "--out", str(out), "--jobs", "1"))
        _ok(_cli("report", "--out", str(out)))
    finally:
        _pip("uninstall", "-y", "wbc-example-plugin")
    folders = sorted(p.name for p in (out / "jobs").iterdir())
    assert any(f.startswith(f"{MODEL}@width=4__") for f in folders), folders
    assert any(f.startswith("wbc_example_plugin.model-example_tiny_unet@width=4__") for f in folders), folders
    assert {MODEL, dotted} <= _displays(out)
    main_table = (out / "tables" / "main.md").read_text()
    assert f"| {MODEL} |" in main_table and f"| {dotted} |" in main_table
    assert MODEL in (out / "tables" / "per_domain_iou.md").read_text()


def test_plugin_option_loads_the_example_in_worker_processes(tmp_path) -> None:
    """--plugin on a package that is not installed (PYTHONPATH): the spawned workers load it too."""
    out = tmp_path / "res"
    path = str(EXAMPLE)
    listed = _ok(_cli("models", "--plugin", "wbc_example_plugin.model,wbc_example_plugin", PYTHONPATH=path,
                      WBC_PLUGINS="wbc_example_plugin"))
    assert MODEL in listed and "classifier+segmenter" in listed
    _ok(_cli(*SMOKE_RUN, "--models", MODEL, "--out", str(out), "--jobs", "2", "--plugin", "wbc_example_plugin",
             PYTHONPATH=path))
    folders = [p.name for p in (out / "jobs").iterdir()]
    assert any(f.startswith(f"{MODEL}__") for f in folders) and len(folders) == 3, folders


# --- clear errors ------------------------------------------------------------------------------------

def _module(tmp_path: Path, monkeypatch, name: str, source: str) -> str:
    """A module of the test's own, importable in this process."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return name


def _error(argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("WBC_PLUGINS", "")  # restored afterwards: --plugin writes it for the workers
    assert main(argv) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["data"], ["protocols"], ["models"], ["treatments"], ["run", "--protocol", PROTOCOL], ["report", "--out", "x"],
    ["evaluate", "--results", "x", "--targets", "hed"], ["hypotheses", "--out", "x"],
], ids=lambda argv: argv[0])
def test_every_command_takes_plugin_and_names_an_unknown_one(argv: list[str], capsys, monkeypatch) -> None:
    err = _error([*argv, "--plugin", "no_such_wbc_plugin"], capsys, monkeypatch)
    assert "plugin 'no_such_wbc_plugin'" in err and "cannot be found" in err and "PYTHONPATH" in err
    assert "docs/plugins.md" in err


def test_plugin_that_raises_on_import(tmp_path, capsys, monkeypatch) -> None:
    name = _module(tmp_path, monkeypatch, "wbc_test_boom_plugin", "raise RuntimeError('no GPU driver here')\n")
    err = _error(["treatments", "--plugin", name], capsys, monkeypatch)
    assert f"plugin '{name}'" in err and "failed while importing: RuntimeError: no GPU driver here" in err
    assert f"{name}.py:1" in err and "fix the plugin" in err


def test_plugin_model_clashing_with_a_built_in(tmp_path, capsys, monkeypatch) -> None:
    name = _module(tmp_path, monkeypatch, "wbc_test_clash_plugin", """
        from models import register_model

        @register_model("sg_cldff", heads=("segmenter",))
        def my_sg_cldff(num_classes=5, img_size=224):
            raise AssertionError("never built")
        """)
    err = _error(["models", "--plugin", name], capsys, monkeypatch)
    assert f"plugin '{name}'" in err and "model 'sg_cldff' is registered twice" in err
    assert "models.sg_cldff.sg_cldff" in err and f"{name}.my_sg_cldff" in err and "rename one" in err


def test_unknown_model_and_dotted_path(capsys, monkeypatch) -> None:
    err = _error([*SMOKE_RUN, "--models", "tiny_unet_of_mine", "--out", "unused"], capsys, monkeypatch)
    assert "unknown model 'tiny_unet_of_mine'" in err and "--plugin" in err and "MODULE:FACTORY" in err
    err = _error([*SMOKE_RUN, "--models", "no_such_wbc_pkg.nets:tiny", "--out", "unused"], capsys, monkeypatch)
    assert "model 'no_such_wbc_pkg.nets:tiny': no module named 'no_such_wbc_pkg'" in err and "PYTHONPATH" in err
    err = _error([*SMOKE_RUN, "--models", "models.floors:no_such_factory", "--out", "unused"], capsys, monkeypatch)
    assert "module 'models.floors' has no callable 'no_such_factory'" in err
    err = _error([*SMOKE_RUN, "--model-kwargs", "[4]", "--out", "unused"], capsys, monkeypatch)
    assert "--model-kwargs must be a JSON object" in err


BROKEN = """
    import torch
    from torch import nn
    from models.base import ModelOutput, WBCModel


    class Tiny(WBCModel):
        has_classifier = False

        def __init__(self, fault):
            super().__init__()
            self.fault, self.conv = fault, nn.Conv2d(3, 2, 1)

        def forward(self, x):
            logits = self.conv(x)
            if self.fault == "tuple":
                return None, logits
            if self.fault == "shape":
                logits = logits[..., ::2, ::2]
            return ModelOutput(class_logits=None, mask_logits=logits)

        def loss(self, out, batch):
            total = out.mask_logits.mean() * (float("nan") if self.fault == "nan" else 1.0)
            return total, {"total": total.item()}


    def factory(fault):
        return lambda num_classes=5, img_size=224: Tiny(fault)


    returns_tuple, wrong_shape, nan_loss, lying_heads = factory("tuple"), factory("shape"), factory("nan"), factory("")
    lying_heads.heads = ("classifier",)  # the metadata a dotted-path factory may declare, here wrong


    def no_sizes(width=8):
        return Tiny("")


    too_big = factory("")
    too_big.heads, too_big.min_size = ("segmenter",), 128


    def not_a_model(num_classes=5, img_size=224):
        return nn.Conv2d(3, 2, 1)
    """


@pytest.mark.parametrize("factory, expected", [
    ("returns_tuple", "forward (training mode) returned tuple, not models.base.ModelOutput"),
    ("wrong_shape", "mask_logits (training mode) is a float32 tensor (2, 2, 32, 32), expected a float tensor (2, 1 or 2, 64, 64)"),
    ("nan_loss", "the loss on a dummy batch is nan"),
    ("not_a_model", "its factory returned Conv2d, not a models.base.WBCModel"),
    ("lying_heads", "its metadata declares heads ('classifier',) but the built model reports has_classifier=False"),
])
def test_factory_breaking_the_output_contract(tmp_path, capsys, monkeypatch, factory: str, expected: str) -> None:
    name = _module(tmp_path, monkeypatch, "wbc_test_broken_models", BROKEN)
    err = _error([*SMOKE_RUN, "--models", f"{name}:{factory}", "--out", str(tmp_path / "res")], capsys, monkeypatch)
    assert f"model '{name}:{factory}'" in err and "breaks the output contract at 64 px" in err, err
    assert expected in err and "docs/plugins.md" in err, err
    assert not (tmp_path / "res" / "jobs").exists(), "nothing may be trained or written"


def test_factory_that_cannot_take_the_budget(tmp_path, capsys, monkeypatch) -> None:
    name = _module(tmp_path, monkeypatch, "wbc_test_broken_models", BROKEN)
    err = _error([*SMOKE_RUN, "--models", f"{name}:no_sizes", "--out", str(tmp_path / "res")], capsys, monkeypatch)
    assert f"model '{name}:no_sizes': its factory must take num_classes and img_size" in err, err
    err = _error([*SMOKE_RUN, "--models", f"{name}:too_big", "--out", str(tmp_path / "res")], capsys, monkeypatch)
    assert f"model '{name}:too_big' (dotted path) needs inputs of at least 128 px, got 64 (budget smoke)" in err, err


def test_registered_plugin_model_breaking_the_contract_names_its_module(tmp_path) -> None:
    (tmp_path / "wbc_test_broken_models.py").write_text(textwrap.dedent(BROKEN) + textwrap.dedent("""
        from models import register_model

        register_model("broken_plugin_net", heads=("segmenter",))(wrong_shape)
        """))
    proc = _cli(*SMOKE_RUN, "--models", "broken_plugin_net", "--out", str(tmp_path / "res"),
                "--plugin", "wbc_test_broken_models", PYTHONPATH=str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "model 'broken_plugin_net' (wbc_test_broken_models." in proc.stderr
    assert "mask_logits (training mode)" in proc.stderr and "docs/plugins.md" in proc.stderr
