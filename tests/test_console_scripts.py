"""Each command is installed as a console script that is its ``python -m`` form under another name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

SCRIPTS = {
    "ale-replay-train": "replay.train",
    "ale-replay-render": "render",
    "ale-replay-verify": "replay.verify",
    "ale-replay-show": "replay.show",
    "ale-replay-viewer": "render.viewer",
}


def script(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed beside {sys.executable}; install the project: pip install -e ."
    return found


def output(command: list[str]) -> tuple[int, str]:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    "name",
    # the trainer's and the renderer's start torch and Hydra twice over (~7 s each): the slow suite checks them
    [
        pytest.param(n, marks=pytest.mark.slow) if n in ("ale-replay-train", "ale-replay-render") else n
        for n in sorted(SCRIPTS)
    ],
)
def test_the_console_script_says_what_its_python_m_form_says(name: str) -> None:
    module = SCRIPTS[name]
    code, text = output([script(name), "--help"])
    assert code == 0, text
    expected_code, expected = output([sys.executable, "-m", module, "--help"])
    assert (code, text) == (expected_code, expected)


def test_a_console_script_runs_the_command(tmp_path: Path) -> None:
    log = ROOT / "tests" / "fixtures" / "legacy-trainer-stack.h5"
    code, text = output([script("ale-replay-show"), str(log)])
    assert code == 0 and "train episodes  7 finished, 2 unfinished" in text
    code, text = output([script("ale-replay-verify"), "--quiet", str(log)])
    assert code == 0 and "1546 steps re-simulated\nall episodes replay exactly" in text
    code, text = output([script("ale-replay-show"), str(tmp_path / "missing")])
    assert code == 2 and text.startswith("error: ")
