"""A local S3 server for development, tests and benchmarks: moto's S3, in memory or on disk.

`python -m moto.server` (werkzeug's server) answers every request with
`Connection: close`, so a client opens a TCP connection per request and the
figures measure the emulator's sockets, not the project. This serves the
same moto S3 app from cheroot's threaded HTTP/1.1 server, which keeps
connections alive as AWS and MinIO do.

With `--data DIR` what it stores survives a restart, even a `kill -9`:
every bucket is a folder of DIR and every object a file in it (its key
quoted into one file name), written before the request is answered
(through a temporary file and a rename, so a file is whole or absent) and
loaded back at start. moto keeps answering as S3 does (conditional writes,
listing, deletes); the files only mirror what it holds. Not kept: versions,
multipart uploads in progress, tags, ACLs and other object metadata (the
project's saver uses none of them). One writer at a time: writes are
serialised, which is plenty for one developer's machine.

`GET /_requests` answers how many S3 requests it has served (for benchmarks).

Run: `python scripts/local_s3.py --port 9000 [--data .data/s3]`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from cheroot import wsgi
from moto.core import DEFAULT_ACCOUNT_ID  # type: ignore[attr-defined]
from moto.moto_server.werkzeug_app import create_backend_app
from moto.s3.exceptions import MissingBucket, MissingKey
from moto.s3.models import s3_backends

_WRITES = frozenset({"PUT", "POST", "DELETE"})


class DiskMirror:
    """Buckets and objects of moto's backend, mirrored to files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Clients without an account of their own (any key but a 12-digit id) use this one.
        self.backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def load(self) -> int:
        """Puts every stored object back into the backend; how many."""
        self.root.mkdir(parents=True, exist_ok=True)
        loaded = 0
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            bucket = unquote(folder.name)
            self.backend.create_bucket(bucket, os.environ.get("AWS_REGION", "us-east-1"))
            for file in folder.iterdir():
                if not file.name.startswith("."):  # not a half-written temporary file
                    self.backend.put_object(bucket, unquote(file.name), file.read_bytes())
                    loaded += 1
        return loaded

    def sync(self, bucket: str, key: str | None) -> None:
        """Makes the files of `bucket` (or of its object `key`) what the backend holds."""
        folder = self.root / quote(bucket, safe="")
        try:
            stored = self.backend.get_bucket(bucket)
        except MissingBucket:
            if folder.exists():
                for file in folder.iterdir():
                    file.unlink()
                folder.rmdir()
            return
        folder.mkdir(exist_ok=True)
        keys = [key] if key is not None else [unquote(f.name) for f in folder.iterdir()
                                              if not f.name.startswith(".")]
        for name in keys:
            self._sync_key(stored.name, name, folder)

    def _sync_key(self, bucket: str, key: str, folder: Path) -> None:
        target = folder / quote(key, safe="")
        try:
            found = self.backend.get_object(bucket, key)
        except MissingKey:
            found = None
        if found is None:
            target.unlink(missing_ok=True)
            return
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".", delete=False) as part:
            part.write(found.value)
            part.flush()
            os.fsync(part.fileno())
        os.replace(part.name, target)


class LocalS3:
    """The S3 app, counting the requests it serves, mirrored to disk if given a mirror."""

    def __init__(self, mirror: DiskMirror | None = None) -> None:
        self.app = create_backend_app("s3")
        self.mirror = mirror
        self.served = itertools.count()
        self.last = 0
        self._writing = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/_requests":
            count = str(self.last).encode()
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(count)))])
            return [count]
        self.last = next(self.served) + 1
        if self.mirror is None or environ.get("REQUEST_METHOD") not in _WRITES:
            answer: Iterable[bytes] = self.app(environ, start_response)
            return answer
        bucket, _, key = environ.get("PATH_INFO", "/").lstrip("/").partition("/")
        with self._writing:  # the file and moto change together, one request at a time
            written: list[bytes] = list(self.app(environ, start_response))
            if bucket:
                # Before the answer leaves: what the client is told is stored, is.
                self.mirror.sync(bucket, key or None)
        return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--data", type=Path, help="keep what is stored in this folder")
    args = parser.parse_args()
    mirror = DiskMirror(args.data) if args.data else None
    where = "in memory: lost when stopped"
    if mirror is not None:
        where = f"kept in {args.data} ({mirror.load()} objects loaded)"
    # Threads for the connections held open at once: every S3 client's pool.
    server = wsgi.Server((args.host, args.port), LocalS3(mirror), numthreads=64, max=512)
    print(f"S3 (moto, keep-alive) on http://{args.host}:{args.port}, {where}", flush=True)
    server.safe_start()


if __name__ == "__main__":
    main()
