"""A file the worker touches while it works, and the liveness probe that reads it.

`celery inspect ping` (docker-compose's healthcheck) broadcasts through the
broker to every worker and waits for the answers, and each probe starts a
Python process that loads Celery and the app: a broker round trip and about
a second of CPU per probe, per pod. Kubernetes probes every pod every few
seconds, so its probe reads a file's age instead.

Celery's consumer sends its event heartbeat every 2 s from its own timer
(`heartbeat_sent`); at each, `Heartbeat.beat` asks the process's turns loop
(worker/runtime.py) to touch the file. A fresh file therefore says that both
loops still turn: the consumer's, which takes tasks, and the one the turns
run on. A worker started with `--without-heartbeat` sends none, and would be
found dead.

`python -m worker.heartbeat FILE MAX_AGE` exits 0 when FILE was touched less
than MAX_AGE seconds ago, 1 otherwise. It imports nothing of Celery or the
app, so a probe costs a bare interpreter's start.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

Schedule = Callable[[Callable[[], None]], None]


class Heartbeat:
    """Touches `path` from the thread `schedule` runs callbacks on."""

    def __init__(self, path: Path, schedule: Schedule) -> None:
        self.path = path
        self._schedule = schedule

    def beat(self) -> None:
        """Called from Celery's timer: returns at once; the loop touches the file."""
        # A closed loop (shutdown) raises: a stale file is the truth then.
        with contextlib.suppress(RuntimeError):
            self._schedule(self._touch)

    def _touch(self) -> None:
        self.path.touch()


def age(path: Path, now: float | None = None) -> float:
    """Seconds since `path` was last touched; infinite when it does not exist."""
    try:
        touched = path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
    return (time.time() if now is None else now) - touched


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m worker.heartbeat FILE MAX_AGE_SECONDS", file=sys.stderr)
        return 2
    path, max_age = Path(argv[0]), float(argv[1])
    seconds = age(path)
    if seconds < max_age:
        return 0
    print(f"worker heartbeat {os.fspath(path)} is {seconds:.0f} s old (limit {max_age:.0f} s)",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
