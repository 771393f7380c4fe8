"""Folding the metric files of processes that are gone into one file per kind.

In prometheus_client's multiprocess mode each process writes its counters and
histograms to files of its own, and every scrape reads every file. A process
that ends leaves its files, and must: what it counted still counts. But a
worker restarted a thousand times would leave a thousand files, and each
scrape would cost more. So a process starting folds the files of this host's
dead processes into one `<kind>_folded.db` per kind (their values added, key
by key) and deletes them; the totals a scrape reads stay the same.

Gauges are not folded: they describe live processes. Their files go at a
clean shutdown (worker.metrics_server.process_ended), and those of a process
killed outright go here, with its counters. Files of other hosts (containers
sharing the directory) are left to those hosts' processes. A process killed
in the middle of a fold may leave one file to be added again.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import mark_process_dead

from shared.metrics import MULTIPROC_DIR_ENV

# The kinds whose values add up across processes.
FOLDED_KINDS = ("counter", "histogram")
FOLDED = "folded"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _dead_files(path: str, kind: str) -> list[str]:
    """`kind` files of this host's processes that have ended (the files are
    named by shared.metrics.process_id: `<kind>_<host>-<pid>.db`)."""
    host = socket.gethostname()
    dead = []
    for name in glob.glob(os.path.join(path, f"{kind}_{host}-*.db")):
        pid = Path(name).stem.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            dead.append(name)
    return dead


def _process_of(name: str) -> str:
    """The process id (shared.metrics.process_id) a file is named by."""
    return Path(name).stem.split("_", 1)[1]


@contextlib.contextmanager
def _folding(path: str) -> Iterator[None]:
    # One process folds at a time: two would add the same file twice.
    with open(os.path.join(path, ".folding.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fold_dead_processes(path: str) -> int:
    """Adds the counters and histograms of this host's ended processes into
    the folded files, and deletes theirs; the number of files folded."""
    folded = 0
    with _folding(path):
        for kind in FOLDED_KINDS:
            dead = _dead_files(path, kind)
            if not dead:
                continue
            into = MmapedDict(os.path.join(path, f"{kind}_{FOLDED}.db"))
            try:
                for name in dead:
                    for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(name):
                        total, _ = into.read_value(key)
                        into.write_value(key, total + value, timestamp)
                    os.remove(name)
                    mark_process_dead(_process_of(name), path)  # its live gauges
                    folded += 1
            finally:
                into.close()
    return folded


def fold_if_shared() -> int:
    """Folds the directory of PROMETHEUS_MULTIPROC_DIR, if this process has one."""
    path = os.environ.get(MULTIPROC_DIR_ENV)
    return fold_dead_processes(path) if path else 0
