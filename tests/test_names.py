"""Every unknown name is answered with the closest valid one, and the CLI answers a misspelt name
before torch loads (the speed of that answer is a consequence: no timed test)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli.main import main
from benchmark.engine.launchers.base import LAUNCHERS
from benchmark.engine.treatments import TREATMENTS
from core.catalogue import BUILTIN_LAUNCHERS, BUILTIN_MODELS, BUILTIN_PROTOCOLS, BUILTIN_TREATMENTS
from core.plugins import plugin_modules
from core.suggest import did_you_mean
from models import MODELS
from protocols.registry import PROTOCOLS

ROOT = Path(__file__).resolve().parents[1]


def test_the_catalogue_is_what_the_registries_hold():
    """The torch-free list the CLI checks first must not drift from the registries."""
    assert not plugin_modules(), "this check needs a process without plugins"
    assert set(BUILTIN_MODELS) == set(MODELS.names())
    assert set(BUILTIN_TREATMENTS) == set(TREATMENTS.names())
    assert set(BUILTIN_LAUNCHERS) == set(LAUNCHERS.names())
    assert set(BUILTIN_PROTOCOLS) == set(PROTOCOLS.names())


def test_did_you_mean_picks_the_closest_or_nothing():
    assert did_you_mean("sg_cldf", BUILTIN_MODELS) == " (did you mean 'sg_cldff'?)"
    assert did_you_mean("CROSS_STAN", BUILTIN_PROTOCOLS) == " (did you mean 'cross_stain'?)"
    assert did_you_mean("zzzz", BUILTIN_MODELS) == ""


@pytest.mark.parametrize("argv, suggestion", [
    (["run", "--protocol", "cross_stan"], "cross_stain"),
    (["run", "--protocol", "cross_stain", "--models", "sg_cldf"], "sg_cldff"),
    (["run", "--protocol", "cross_stain", "--treatments", "macenk"], "macenko"),
    (["run", "--protocol", "cross_stain", "--launcher", "rey"], "ray"),
    (["run", "--protocol", "cross_stain", "--sources", "zheng_d3"], "zheng_d"),
    (["evaluate", "--results", "results/cross_stain", "--targets", "hedd"], "hed"),
    (["protocols", "show", "within_datset"], "within_dataset"),
])
def test_a_misspelt_name_is_answered_with_a_suggestion_before_torch_loads(argv, suggestion):
    code = ("import sys, json; from benchmark.cli.main import main; rc = main(sys.argv[1:]); "
            "print(json.dumps([rc, 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code, *argv, "--seeds", "1"] if argv[0] == "run" else
                          [sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True)
    rc, torch_loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert rc == 2 and f"(did you mean '{suggestion}" in done.stderr
    assert not torch_loaded, f"torch was imported before the name was checked: {argv}"


def test_run_help_lists_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(p in text for p in BUILTIN_PROTOCOLS) and "sg_cldff_no_align" in text and "macenko" in text


def test_a_bug_inside_a_job_is_one_line_with_where_it_was_raised():
    from benchmark.engine.launchers.base import describe_error

    def step():
        raise TypeError("unsupported operand\n  for +")

    try:
        step()
    except TypeError as e:
        line = describe_error(e)
    assert "\n" not in line and line.startswith("TypeError: unsupported operand for + (raised at ")
    assert f"{Path(__file__).name}:" in line and "in step)" in line


def test_a_bad_file_in_a_users_folder_is_bad_input_for_data(tmp_path, capsys, monkeypatch):
    """Exit status 2, as for a bad dataset.json (docs/usage.md); 1 stays for a public archive that
    failed to download or verify."""
    monkeypatch.setenv("WBC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WBC_DATASETS", "")  # --dataset extends it; setenv records the undo
    folder = tmp_path / "lab"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "a.png").write_bytes(b"not a png")
    assert main(["data", "--root", str(tmp_path / "data"), "--dataset", f"badlab={folder}"]) == 2
    assert "a.png" in capsys.readouterr().err


def test_wrong_class_logits_are_described_as_class_logits():
    import torch

    from models.base import ModelOutput, WBCModel
    from models.contract import check_output_contract

    class Wrong(WBCModel):
        has_classifier, has_segmenter = True, False

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return ModelOutput(class_logits=torch.zeros(x.shape[0], 3) + self.w, mask_logits=None)

    with pytest.raises(Exception, match=r"one logit per class") as info:
        check_output_contract(Wrong(), "mylab.nets:wrong", 32)
    assert "mask logits" not in str(info.value)
