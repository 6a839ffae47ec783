"""The layers import one way: the engine (``replay/`` outside ``train/``) imports neither the trainer nor the
renderer, and the recording path no torch. Checked in fresh processes, by what each import loads."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import replay

ENGINE = sorted(f"replay.{m.name}" for m in pkgutil.iter_modules(replay.__path__) if not m.ispkg)


def loaded_by(module: str) -> set[str]:
    script = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("module", ENGINE)
def test_the_engine_imports_neither_the_trainer_nor_the_renderer(module: str) -> None:
    loaded = loaded_by(module)
    assert not {m for m in loaded if m.startswith(("replay.train", "render"))}


def test_recording_imports_no_torch() -> None:
    loaded = loaded_by("replay.recorder")
    assert "torch" not in loaded and "replay.recorder" in loaded
