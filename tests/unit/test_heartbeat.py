"""The worker's heartbeat file and the liveness probe that reads it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from worker.heartbeat import Heartbeat, age, main


def test_a_beat_touches_the_file_from_the_thread_it_is_scheduled_on(tmp_path: Path) -> None:
    scheduled: list[Callable[[], None]] = []
    heartbeat = Heartbeat(tmp_path / "beat", scheduled.append)
    heartbeat.beat()
    assert not heartbeat.path.exists()  # nothing until the loop runs it
    [touch] = scheduled
    touch()
    assert age(heartbeat.path) < 5


def test_a_closed_loop_leaves_the_file_stale(tmp_path: Path) -> None:
    def closed(_: Callable[[], None]) -> None:
        raise RuntimeError("Event loop is closed")

    Heartbeat(tmp_path / "beat", closed).beat()
    assert not (tmp_path / "beat").exists()


def test_age(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    assert age(path) == float("inf")
    path.touch()
    os.utime(path, (1000.0, 1000.0))
    assert age(path, now=1030.0) == 30.0


def test_the_probe_passes_on_a_fresh_file_and_fails_on_a_stale_or_missing_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "beat"
    assert main([str(path), "60"]) == 1
    path.touch()
    assert main([str(path), "60"]) == 0
    old = time.time() - 90
    os.utime(path, (old, old))
    assert main([str(path), "60"]) == 1
    assert "is 90 s old (limit 60 s)" in capsys.readouterr().err
    assert main([str(path)]) == 2
