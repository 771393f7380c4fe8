"""Redis round trips per turn, per process: each send on the wire, a pipeline or a script being one.

`INFO commandstats` counts every command a script runs, and `MONITOR` every
command sent; neither says how often a process waits on Redis. This bench
starts the stack (echo model, two worker processes) with a `sitecustomize`
on each process's path that counts redis-py's sends (its asyncio clients:
the product's state; its sync ones: Celery's broker, apart), then sends
sequential waited `POST /chat` turns on one thread and prints, per process,
the round trips per turn and what each was (its first command; `PIPE[n]`
for a pipeline of n).

Run: `python -m bench.roundtrips_bench [--turns 30]`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.proc import tree
from tests.stack import Stack, launch_all

# Loaded by every Python process of the stack (through PYTHONPATH): counts
# redis-py's packed sends, and writes them to $ROUNDTRIPS_OUT/<pid>.json at
# each SIGUSR2 and at exit.
COUNTER = '''
import atexit, json, os, signal, sys

_counts = {"async": {}, "sync": {}}


def _name(command):
    raw = b"".join(command) if isinstance(command, (list, tuple)) else command
    parts = raw.split(b"\\r\\n")
    name = parts[2].decode(errors="replace").upper() if len(parts) > 2 else "?"
    sent = raw.count(b"\\r\\n*") + 1
    return name if sent == 1 else f"PIPE[{sent}]:{name}"


def _dump(*_):
    with open(os.path.join(os.environ["ROUNDTRIPS_OUT"], f"{os.getpid()}.json"), "w") as f:
        json.dump({"argv": " ".join(sys.argv), "counts": _counts}, f)


def _counting(kind, send):
    def count(command):
        _counts[kind][_name(command)] = _counts[kind].get(_name(command), 0) + 1
    if kind == "async":
        async def counted(self, command, check_health=True):
            count(command)
            return await send(self, command, check_health)
    else:
        def counted(self, command, check_health=True):
            count(command)
            return send(self, command, check_health)
    return counted


from redis import connection as _sync
from redis.asyncio import connection as _async

_async.AbstractConnection.send_packed_command = _counting(
    "async", _async.AbstractConnection.send_packed_command)
_sync.AbstractConnection.send_packed_command = _counting(
    "sync", _sync.AbstractConnection.send_packed_command)
atexit.register(_dump)
signal.signal(signal.SIGUSR2, _dump)
'''


def read_counts(stack: Stack, out: Path) -> dict[int, dict[str, Any]]:
    """Every process's counts so far, by pid (each writes its own on SIGUSR2)."""
    pids = [p for server in (stack.gateway, *stack.workers) for p in tree(server.pid)]
    for pid in pids:
        os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 10
    counts: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(counts) < len(pids):
        time.sleep(0.1)  # bounded: each process writes within its next bytecode
        counts = {int(f.stem): json.loads(f.read_text()) for f in out.glob("*.json")
                  if int(f.stem) in pids and f.stat().st_mtime >= started_at(out)}
    return counts


def started_at(out: Path) -> float:
    return (out / ".asked").stat().st_mtime


def ask(out: Path) -> None:
    (out / ".asked").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site, out = Path(tmp) / "site", Path(tmp) / "out"
        site.mkdir()
        out.mkdir()
        (site / "sitecustomize.py").write_text(COUNTER)
        # Every process of the stack inherits these (tests/servers.py passes os.environ on).
        os.environ["ROUNDTRIPS_OUT"] = str(out)
        os.environ["PYTHONPATH"] = os.pathsep.join([str(site), os.getcwd()])
        with launch_all(Path(tmp) / "stack", 2, LLM_PROVIDER="echo") as stack:
            thread = None
            for n in range(5):  # warm: scripts loaded, connections open
                reply = stack.client.post("/chat", json={"message": f"warm {n}",
                                                         "thread_id": thread})
                thread = reply.json()["thread_id"]
            ask(out)
            before = read_counts(stack, out)
            for n in range(args.turns):
                reply = stack.client.post("/chat", json={"message": f"turn {n}",
                                                         "thread_id": thread})
                assert reply.status_code == 200, reply.text
            ask(out)
            after = read_counts(stack, out)
    report(before, after, args.turns)


def report(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]],
           turns: int) -> None:
    totals: Counter[str] = Counter()
    print(f"{turns} sequential waited POST /chat turns on one thread, echo, 2 worker "
          "processes: Redis round trips per turn")
    for pid, now in sorted(after.items()):
        then = before.get(pid, {"counts": {"async": {}, "sync": {}}})
        role = "gateway" if "uvicorn" in now["argv"] else f"worker {pid}"
        for kind in ("async", "sync"):
            sent = Counter(now["counts"][kind])
            sent.subtract(then["counts"][kind])
            total = sum(sent.values())
            if not total:
                continue
            totals[kind] += total
            what = ", ".join(f"{name} {count / turns:.2f}"
                             for name, count in sent.most_common() if count)
            label = "state" if kind == "async" else "broker (Celery)"
            print(f"  {role}, {label}: {total / turns:.2f} ({what})")
    print(f"  all processes: state {totals['async'] / turns:.2f}, "
          f"broker {totals['sync'] / turns:.2f}")


if __name__ == "__main__":
    main()
