"""The start-up version guard: the locked versions pass, any other version stops errand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from errand import cli, pins
from errand.pins import PINNED, PinMismatch, check_pins, pin_problems

ROOT = Path(__file__).resolve().parents[2]


def locked_versions(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text()
    return {m[1].lower(): m[2] for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.M)}


@pytest.mark.parametrize("lock", ["runtime.lock", "test.lock"])
def test_the_lock_files_pin_exactly_the_guarded_versions(lock: str) -> None:
    locked = locked_versions(lock)
    assert {dist: locked.get(dist) for dist in PINNED} == {d: v for d, (v, _) in PINNED.items()}
    check_pins(locked.get)


def test_the_installed_versions_are_the_pinned_ones() -> None:
    assert pin_problems() == []


def test_another_bullmq_version_is_refused_with_the_fix() -> None:
    locked = locked_versions("runtime.lock")
    with pytest.raises(PinMismatch) as caught:
        check_pins(lambda dist: "3.5.0" if dist == "bullmq" else locked.get(dist))
    message = str(caught.value)
    assert "errand's fast engine" in message
    assert "was written for bullmq 3.4.4; found 3.5.0." in message
    assert "requirements/runtime.lock" in message
    assert "redis" not in message.split("Install")[0]  # only the mismatch is named


def test_a_missing_library_is_named() -> None:
    problems = pin_problems(lambda dist: None)
    assert len(problems) == len(PINNED)
    assert all(p.endswith("found none installed.") for p in problems)


@pytest.mark.parametrize("command", ["up", "api", "worker"])
def test_the_commands_that_run_errand_stop_on_a_mismatch(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pins, "version", lambda dist: "0.0.1")
    result = CliRunner().invoke(cli.app, [command])
    assert result.exit_code == 2
    assert "was written for bullmq 3.4.4; found 0.0.1." in result.output
