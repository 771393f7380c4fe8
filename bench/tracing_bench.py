"""What tracing costs: the same turns with tracing off and on.

First the calls a turn makes into shared.tracing with tracing off, timed in
this process. Then, for each case, the whole stack on loopback (one worker
process, the Groq-like server through ChatGroq, so every turn has an LLM
span): 100 waited `POST /chat` turns one after the other, then 20 clients x
10 turns; the client's wait, and CPU ms per turn of the gateway and the
worker. Case `on` exports every span over OTLP/HTTP to a receiver in this
process that decodes and keeps them, as a collector would.

Run: `python -m bench.tracing_bench [--cases off on]`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import timeit
from pathlib import Path

from bench.perf_bench import Meter, base_url, chats, percentiles, rig, warm
from shared import tracing
from tests.otlp import OtlpReceiver


def off_path() -> None:
    assert not tracing.wanted({})
    runs = 1_000_000
    for name, call in (("current_context()", tracing.current_context),
                       ("with run_span(...)", _enter_run_span)):
        seconds = timeit.timeit(call, number=runs)
        print(f"off: {name}: {seconds / runs * 1e9:.0f} ns per call")


def _enter_run_span() -> None:
    with tracing.run_span(None, "job", "thread"):
        pass


def case(tmp: Path, name: str, **env: str) -> None:
    with rig(tmp / name, 1, **env) as stack:
        warm(stack, 4)
        with Meter(stack) as meter:
            waits, _ = asyncio.run(chats(base_url(stack), 1, 100, "seq"))
        print(f"{name}: 100 turns on one thread: {percentiles(waits)}")
        print(meter.report(100))
        with Meter(stack) as meter:
            waits, elapsed = asyncio.run(chats(base_url(stack), 20, 10, "load"))
        print(f"{name}: 20 clients x 10 turns: {200 / elapsed:.1f} turns/s, "
              f"{percentiles(waits)}")
        print(meter.report(200))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=["off", "on"], default=["off", "on"])
    args = parser.parse_args()
    off_path()
    with tempfile.TemporaryDirectory() as tmp, OtlpReceiver() as receiver:
        for name in args.cases:
            if name == "off":
                case(Path(tmp), "off")
            else:
                case(Path(tmp), "on", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)
                print(f"  spans received: {len(receiver.spans)}")


if __name__ == "__main__":
    main()
