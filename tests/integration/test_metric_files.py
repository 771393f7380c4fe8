"""Folding the metric files of ended processes, with real processes and prometheus_client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from shared.metric_files import fold_dead_processes

# A process counting as the gateway and workers do, in the given directory.
COUNT = """
import sys
from shared import metrics
metrics.TURNS.labels("succeeded").inc(int(sys.argv[1]))
metrics.TURN_DURATION.labels("succeeded").observe(0.3)
"""


def scrape(path: Path) -> str:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(path))  # type: ignore[no-untyped-call]
    return generate_latest(registry).decode()


def count_in(path: Path, turns: int) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)}
    subprocess.run([sys.executable, "-c", COUNT, str(turns)], env=env, check=True,
                   cwd=Path(__file__).parent.parent.parent, timeout=60)


def test_the_files_of_ended_processes_fold_into_one_and_the_totals_stay(
        tmp_path: Path) -> None:
    for turns in (1, 2, 3):
        count_in(tmp_path, turns)
    before = scrape(tmp_path)
    files_before = sorted(p.name for p in tmp_path.glob("*.db"))

    folded = fold_dead_processes(str(tmp_path))
    count_in(tmp_path, 4)  # a process after the fold counts on as before
    folded_again = fold_dead_processes(str(tmp_path))

    assert folded == 6 and folded_again == 2  # a counter and a histogram file each
    assert len(files_before) == 9  # and a gauge of turns running, which goes
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_folded.db", "histogram_folded.db"]
    assert 'chat_turns_total{outcome="succeeded"} 6.0' in before
    after = scrape(tmp_path)
    assert 'chat_turns_total{outcome="succeeded"} 10.0' in after
    assert 'chat_turn_duration_seconds_count{outcome="succeeded"} 4.0' in after
