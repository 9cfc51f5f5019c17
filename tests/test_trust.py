"""A stranger's results folder is data, not code (docs/trust.md): ``evaluate`` never imports a model
named by dotted path in a folder unless the user names it on the command line, and reads weights
only from inside the job folder; ``report``, ``hypotheses`` and ``compare`` import nothing."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from benchmark.cli.main import main
from benchmark.engine.budgets import get_budget
from benchmark.engine.checkpoint import CHECKPOINT_FILE, WEIGHTS_FILE
from benchmark.engine.plan import Sweep
from benchmark.engine.sweep import run_sweep
from benchmark.record.jobs import completed_job_dirs

PROTOCOL, SOURCE = "within_dataset_synthetic", "synth_romanowsky"
PAYLOAD = "wbc_untrusted_payload"
DOTTED = f"{PAYLOAD}:factory"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished training-free job (the majority-class floor) with its checkpoint."""
    out = tmp_path_factory.mktemp("trained")
    run_sweep(Sweep(PROTOCOL, ["majority_class"], [0], get_budget("smoke"), out, sources=[SOURCE]),
              log=lambda _: None)
    return out


@pytest.fixture
def malicious(trained, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """The folder with its job's checkpoint pointing at a module shipped inside the folder, which is
    importable (as a stranger's folder unpacked into a project root would be); importing it leaves a
    marker file. Returns (folder, marker)."""
    folder = Path(shutil.copytree(trained, tmp_path / "stranger"))
    marker = tmp_path / "payload_ran"
    (folder / f"{PAYLOAD}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from models.floors import majority_class as factory\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, PAYLOAD, raising=False)
    ckpt = completed_job_dirs(folder)[0] / CHECKPOINT_FILE
    meta = json.loads(ckpt.read_text())
    ckpt.write_text(json.dumps({**meta, "model": DOTTED}))
    return folder, marker


def test_a_dotted_path_in_a_folder_is_never_imported(malicious, capsys):
    folder, marker = malicious
    assert main(["evaluate", "--results", str(folder), "--targets", "hed"]) == 2
    said = capsys.readouterr()
    assert not marker.exists() and PAYLOAD not in sys.modules, "evaluate ran code named inside a results folder"
    assert f"--allow-model {DOTTED}" in said.out + said.err
    for command in (["report", "--out", str(folder)], ["hypotheses", "--out", str(folder)],
                    ["compare", "--reference", str(folder), "--results", str(folder)]):
        main(command)
        assert not marker.exists() and PAYLOAD not in sys.modules, f"{command[0]} imported code named in the folder"


def test_the_user_can_allow_a_dotted_path_by_name(malicious, capsys):
    """The allow-list is what lets it run: the same folder, the module named on the command line."""
    folder, marker = malicious
    assert main(["evaluate", "--results", str(folder), "--targets", "hed", "--allow-model", DOTTED]) == 0
    assert marker.exists()
    assert "scored 4 (job, target) pair(s)" in capsys.readouterr().out  # hed at its four severities


def test_weights_are_read_only_from_inside_the_job_folder(trained, tmp_path, capsys):
    folder = Path(shutil.copytree(trained, tmp_path / "escape"))
    job = completed_job_dirs(folder)[0]
    outside = tmp_path / "outside.safetensors"
    shutil.copyfile(job / WEIGHTS_FILE, outside)
    meta = json.loads((job / CHECKPOINT_FILE).read_text())
    for name in (f"../../../{outside.name}", str(outside)):
        (job / CHECKPOINT_FILE).write_text(json.dumps({**meta, "weights": {**meta["weights"], "file": name}}))
        assert main(["evaluate", "--results", str(folder), "--targets", "hed"]) == 2
        assert "is not a file of the job folder" in capsys.readouterr().err
    (job / WEIGHTS_FILE).unlink()
    (job / WEIGHTS_FILE).symlink_to(outside)
    (job / CHECKPOINT_FILE).write_text(json.dumps(meta))
    assert main(["evaluate", "--results", str(folder), "--targets", "hed"]) == 2
    assert "is not a file of the job folder" in capsys.readouterr().err


def test_a_model_no_loaded_plugin_registers_fails_the_run_with_the_way_out(trained, tmp_path, capsys):
    """Formerly refused with exit status 0: a user could miss that a job was never scored."""
    folder = Path(shutil.copytree(trained, tmp_path / "plugin"))
    ckpt = completed_job_dirs(folder)[0] / CHECKPOINT_FILE
    ckpt.write_text(json.dumps({**json.loads(ckpt.read_text()), "model": "mylab_net"}))
    assert main(["evaluate", "--results", str(folder), "--targets", "hed"]) == 2
    assert "--plugin" in capsys.readouterr().err
