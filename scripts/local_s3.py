"""A local S3 server for development, tests and benchmarks: moto's S3, in memory.

`python -m moto.server` (werkzeug's server) answers every request with
`Connection: close`, so a client opens a TCP connection per request and the
figures measure the emulator's sockets, not the project. This serves the
same moto S3 app from cheroot's threaded HTTP/1.1 server, which keeps
connections alive as AWS and MinIO do.

`GET /_requests` answers how many S3 requests it has served (for benchmarks).

Run: `python scripts/local_s3.py --port 9000`.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable
from typing import Any

from cheroot import wsgi
from moto.moto_server.werkzeug_app import create_backend_app


class CountingApp:
    """The S3 app, counting the requests it serves."""

    def __init__(self) -> None:
        self.app = create_backend_app("s3")
        self.served = itertools.count()
        self.last = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/_requests":
            body = str(self.last).encode()
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        self.last = next(self.served) + 1
        return self.app(environ, start_response)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    # Threads for the connections held open at once: every S3 client's pool.
    server = wsgi.Server((args.host, args.port), CountingApp(), numthreads=64, max=512)
    print(f"S3 (moto, keep-alive) on http://{args.host}:{args.port}", flush=True)
    server.safe_start()


if __name__ == "__main__":
    main()
