"""``replay.command``: what a Hydra app's command line reports in one line, what keeps its traceback, and what
``--help`` lists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from helpers import ROOT
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError

from replay.command import INTERRUPTED, Refused, run_app


def _app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str, body=None):
    """A tiny ``@hydra.main`` app with one setting, ``size``, run with ``overrides`` as its command line."""
    (tmp_path / "conf").mkdir(exist_ok=True)
    (tmp_path / "conf" / "app.yaml").write_text("size: 3\n")

    @hydra.main(version_base="1.3", config_path=str(tmp_path / "conf"), config_name="app")
    def main(cfg: DictConfig) -> None:
        if body is not None:
            body(cfg)

    argv = ["app", f"hydra.run.dir={tmp_path / 'run'}", "hydra.output_subdir=null", *overrides]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    return main


def test_the_environment_is_left_as_it_was(tmp_path, monkeypatch) -> None:
    run_app(_app(tmp_path, monkeypatch), "app")
    assert "HYDRA_FULL_ERROR" not in os.environ


def test_a_config_mistake_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys) -> None:
    main = _app(tmp_path, monkeypatch, "sise=4")
    with pytest.raises(SystemExit) as stopped:
        run_app(main, "app")
    assert stopped.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == "error: Could not override 'sise': no such setting; `app --cfg job` lists every setting"


def test_an_error_inside_the_app_keeps_its_traceback(tmp_path, monkeypatch) -> None:
    """A config error raised by the app's own code (a bug: a misspelt key read at run time) is not the user's
    mistake: it propagates as itself, traceback and all."""

    def body(cfg: DictConfig) -> None:
        OmegaConf.set_struct(cfg, True)
        print(cfg.sise)

    main = _app(tmp_path, monkeypatch, body=body)
    with pytest.raises(ConfigAttributeError, match="sise"):
        run_app(main, "app")


def test_hydra_full_error_set_by_the_user_shows_the_whole_error(tmp_path, monkeypatch) -> None:
    main = _app(tmp_path, monkeypatch, "sise=4")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(Exception, match="Could not override 'sise'"):
        run_app(main, "app")


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys) -> None:
    def body(cfg: DictConfig) -> None:
        raise KeyboardInterrupt

    main = _app(tmp_path, monkeypatch, body=body)
    with pytest.raises(SystemExit) as stopped:
        run_app(main, "app", interrupted="interrupted; nothing kept")
    assert stopped.value.code == INTERRUPTED == 130
    assert capsys.readouterr().err == "app: interrupted; nothing kept\n"


def test_a_refusal_from_inside_the_app_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys) -> None:
    """What a sweep's job raises for input it cannot use: Hydra's launcher re-raises it after running the other
    jobs, from inside the app's function."""

    def body(cfg: DictConfig) -> None:
        raise Refused(f"size {cfg.size} is too small; pick 4 or more")

    main = _app(tmp_path, monkeypatch, body=body)
    with pytest.raises(SystemExit) as stopped:
        run_app(main, "app")
    assert stopped.value.code == 2
    # Hydra names the failed job's overrides (a sweep has several) before the line
    assert capsys.readouterr().err.splitlines()[-2:] == [
        "Error executing job with overrides: []",
        "error: size 3 is too small; pick 4 or more",
    ]
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the user asked for everything
    with pytest.raises(Refused, match="too small"):
        run_app(main, "app")


HELP_APPS = {
    "replay.train": ({"env", "ppo", "record"}, {"overlay", "product", "video", "selection"}),
    "render": ({"product", "overlay", "video", "selection"}, {"env", "ppo", "record"}),
}


@pytest.mark.parametrize("module", ["replay.train", pytest.param("render", marks=pytest.mark.slow)])  # slow: 5 min
def test_help_lists_the_apps_own_groups_and_every_setting_with_a_description(module: str) -> None:
    own, others = HELP_APPS[module]
    done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    groups_part, settings_part = done.stdout.split("== Groups (group=option) ==")[1].split("== Settings")
    listed = dict(re.findall(r"^(\w+): (.*)$", groups_part, re.MULTILINE))
    assert set(listed) == own and not set(listed) & others
    for group, options in listed.items():
        assert set(options.split(", ")) == {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")}
    rows = [line for line in settings_part.splitlines()[1:] if "=" in line.split(" ")[0]]
    composed = subprocess.run(
        [sys.executable, "-m", module, "--cfg", "job"], capture_output=True, text=True, timeout=120
    ).stdout
    leaves = _leaf_keys(OmegaConf.create(composed))
    assert {row.split("=")[0] for row in rows} == leaves  # every setting, and only settings
    undescribed = [row for row in rows if len(row.split(None, 1)) < 2]
    assert not undescribed, undescribed
    assert "_schema" not in done.stdout


def _leaf_keys(node: DictConfig, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in node.items():
        if isinstance(value, DictConfig):
            keys |= _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys
