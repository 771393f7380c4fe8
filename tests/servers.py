"""Real servers for tests: each on a free loopback port, stopped by the caller.

Integration and end-to-end tests talk to these over real sockets; nothing
here is a fake.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


LOCAL_S3 = Path(__file__).resolve().parents[1] / "scripts" / "local_s3.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0,
                  proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Server:
    """A child process we started, with the log file it writes to."""

    name: str
    argv: Sequence[str]
    port: int | None
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    cwd: Path = ROOT

    def start(self, timeout: float = 30.0) -> Server:
        # The child keeps its own copy of the descriptor; ours can close at once.
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.port is not None:
            wait_for_port(self.port, timeout, self.proc)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def redis_server(workdir: Path, port: int | None = None, persistent: bool = False) -> Server:
    """A redis-server; `persistent` writes every change to an append-only file
    before answering, as production must, so a restart loses nothing."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    aof = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else [
        "--appendonly", "no"]
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            *aof, "--dir", str(workdir)]
    return Server("redis", argv, port, workdir / f"redis-{port}.log")


@dataclass
class RedisCluster:
    """Three redis-server masters joined into one Redis Cluster, every slot
    covered, no replicas."""

    nodes: list[Server]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes if node.port is not None]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self, timeout: float = 30.0) -> RedisCluster:
        try:
            for node in self.nodes:
                node.start(timeout)
            subprocess.run(["redis-cli", "--cluster", "create",
                            *(f"127.0.0.1:{port}" for port in self.ports),
                            "--cluster-replicas", "0", "--cluster-yes"],
                           capture_output=True, check=True, timeout=timeout)
            self._wait_until_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ok(self, timeout: float) -> None:
        # `--cluster create` returns once the slots are assigned; each node says
        # ok only after gossip has told it of the others.
        deadline = time.monotonic() + timeout
        waiting = set(self.ports)
        while waiting:
            for port in list(waiting):
                info = subprocess.run(["redis-cli", "-p", str(port), "cluster", "info"],
                                      capture_output=True, text=True, check=False)
                if "cluster_state:ok" in info.stdout:
                    waiting.discard(port)
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"Redis Cluster nodes {sorted(waiting)} not ok "
                                   f"after {timeout}s")
            if waiting:
                time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def redis_cluster(workdir: Path) -> RedisCluster:
    """A Redis Cluster of three masters on free loopback ports; each node keeps
    its cluster configuration file in `workdir` and nothing else on disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    nodes = []
    for port in (free_port() for _ in range(3)):
        # The bus port is set, not left at port + 10000, which may be taken or
        # past 65535.
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(workdir), "--cluster-enabled", "yes",
                "--cluster-port", str(free_port()),
                "--cluster-config-file", f"nodes-{port}.conf"]
        nodes.append(Server("redis-cluster", argv, port, workdir / f"redis-{port}.log"))
    return RedisCluster(nodes)


RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class RabbitServer(Server):
    """Debian's rabbitmq-server as a node of its own: its own name, ports, data
    and epmd (Erlang's name server, which it starts and leaves running),
    none of them the machine's own RabbitMQ's."""

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        self._stop_epmd()

    def kill(self) -> None:
        super().kill()
        self._stop_epmd()

    def _stop_epmd(self) -> None:
        # It refuses while a node is registered: the node has just stopped,
        # so its registration goes in a moment.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            done = subprocess.run(["epmd", "-kill"], env={**os.environ, **self.env},
                                  capture_output=True, text=True, check=False)
            if "not allowed" not in done.stdout + done.stderr:
                return
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"


def rabbitmq_server(workdir: Path) -> RabbitServer:
    """A RabbitMQ broker on a free loopback port (guest/guest allowed from
    loopback), with no plugins; it starts in about five seconds."""
    if not RABBITMQ_SERVER.exists():
        raise RuntimeError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    port, dist_port, epmd_port = free_port(), free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "enabled_plugins").write_text("[].\n")
    (workdir / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{port}\n")
    env = {
        "HOME": str(workdir),  # its Erlang cookie goes here
        "RABBITMQ_NODENAME": f"test-{port}@localhost",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_PLUGINS_EXPAND_DIR": str(workdir / "plugins"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq"),
    }
    return RabbitServer("rabbitmq", [str(RABBITMQ_SERVER)], port,
                        workdir / f"rabbitmq-{port}.log", env, cwd=workdir)


def s3_server(workdir: Path, port: int | None = None, data: Path | None = None) -> Server:
    """moto's S3 over HTTP/1.1 with keep-alive (scripts/local_s3.py), kept in
    memory, or in the folder `data` as `make run` keeps it."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(LOCAL_S3), "--port", str(port)]
    if data is not None:
        argv += ["--data", str(data)]
    return Server("s3", argv, port, workdir / f"s3-{port}.log")


def create_bucket(endpoint_url: str, bucket: str | None = None) -> str:
    import boto3

    bucket = bucket or f"test-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket=bucket)
    return bucket


class TcpProxy:
    """Forwards a loopback port to another; `stop()` makes the target look down.

    Stopping closes the listener and every open connection, so clients get
    "connection refused" as if the server had died, while the server behind
    (and its data) lives on; `start()` brings it back on the same port.
    """

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                # shutdown() wakes the thread blocked in accept(); close() alone
                # would leave the port accepting until the next connection.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
