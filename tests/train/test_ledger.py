"""The learning ledger's record of what decides an update's bits, and how a machine that differs is named."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from replay.train import ledger
from replay.train.ledger import LedgerWriter, cpu_model, current_setup
from replay.train.network import ActorCritic
from replay.train.ppo import PPOConfig


def _write(path: Path) -> ledger.Session:
    torch.manual_seed(0)
    with LedgerWriter(path) as writer:
        writer.session(
            from_version=0,
            stream=0,
            seed=1,
            ppo=PPOConfig(),
            threads=2,
            device=torch.device("cpu"),
            weights=ActorCritic(4),
        )
    return ledger.read(path).sessions[0]


def test_a_session_records_this_machine_and_finds_nothing_different_here(tmp_path: Path) -> None:
    session = _write(tmp_path / "learning.jsonl")
    here = current_setup()
    assert (session.torch, session.cpu, session.machine, session.cpu_model) == (
        here["torch"],
        here["cpu"],
        here["machine"],
        here["cpu_model"],
    )
    assert session.cpu == torch.backends.cpu.get_cpu_capability() and session.cpu_model == cpu_model()
    assert session.differences() == [] and session.other_processor() is None
    assert session.brief(2) == "its rebuild differs from the recorded one"
    assert session.brief(1) == "1 torch thread here, 2 in training"


def test_another_cpu_capability_is_named_in_full_and_in_a_few_words(tmp_path: Path) -> None:
    here = current_setup()
    other = "AVX512" if here["cpu"] != "AVX512" else "AVX2"
    session = dataclasses.replace(_write(tmp_path / "learning.jsonl"), cpu=other, cpu_model="Some Other CPU")
    assert session.differences() == [f"cpu {other!r} here {here['cpu']!r}"]
    assert session.brief(2) == f"CPU {here['cpu']} here, {other} in training"
    assert session.other_processor() == f"processor 'Some Other CPU' here {here['cpu_model']!r}"


def test_another_processor_of_the_same_capability_is_named_only_as_a_hint(tmp_path: Path) -> None:
    session = dataclasses.replace(_write(tmp_path / "learning.jsonl"), cpu_model="Some Other CPU")
    assert session.differences() == []  # it may well rebuild the same bits: the digests decide
    assert session.brief(2) == f"CPU {cpu_model()} here, Some Other CPU in training"


def test_a_ledger_written_before_the_processor_was_recorded_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "learning.jsonl"
    _write(path)
    fields = json.loads(path.read_text())
    del fields["crc"], fields["cpu_model"]
    path.write_text(ledger._line(fields))
    session = ledger.read(path).sessions[0]
    assert session.cpu_model == "" and session.other_processor() is None
    assert session.brief(2) == "its rebuild differs from the recorded one"
