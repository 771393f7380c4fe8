"""A local S3 server for development, tests and benchmarks: moto's S3, in memory.

`python -m moto.server` answers every request with `Connection: close`
(HTTP/1.0), so a client opens a TCP connection per request and the figures
measure the emulator's sockets, not the project. This serves the same moto
S3 app from werkzeug's threaded server speaking HTTP/1.1, so connections
are kept alive as they are with AWS or MinIO.

`GET /_requests` answers how many S3 requests it has served (for benchmarks).

Run: `python scripts/local_s3.py --port 9000`.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterable
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


class KeepAliveHandler(MotoRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # a line per request would cost more than the request


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
    server = make_server(args.host, args.port, CountingApp(), threaded=True,
                         request_handler=KeepAliveHandler)
    print(f"S3 (moto, keep-alive) on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
