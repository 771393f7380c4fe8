"""agent-chat-ui (langchain-ai/agent-chat-ui), installed, built and served for
tests/e2e/test_agent_chat_ui.py.

Its source at the pinned commit comes from a checkout named by
`AGENT_CHAT_UI_SOURCE`, or the local git mirror of the repository, or else
GitHub's tarball of that commit; nothing of it is copied into ours. It is
installed with the pnpm its package.json pins, against its own lockfile,
and built with `next build` once, into a cache outside the checkout
(`~/.cache/s3-chat-backend/agent-chat-ui-<commit>`), so later runs reuse
both. npm's `create-agent-chat-app` 0.1.6 is no stand-in: its
`templates/nextjs` is an early-2025 snapshot (langgraph-sdk 0.0.x, no `/api`
proxy route, no lockfile), so a pass against it would say nothing about
this commit.

The build is made for no API address: the tests give it in the page's
`apiUrl` query parameter, which the UI reads before its `NEXT_PUBLIC_API_URL`
(that variable is inlined at build time, and the gateway's port changes on
every run).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import httpx

from tests import servers

COMMIT = "fdc87e65307581b02898d33c62b3f285e56bd85b"
MIRROR = Path("/work/.mirror/langchain-ai+agent-chat-ui/repo")
TARBALL = f"https://codeload.github.com/langchain-ai/agent-chat-ui/tar.gz/{COMMIT}"
PNPM = "pnpm@10.5.1"  # the packageManager its package.json names
ASSISTANT_ID = "chat"
# Inlined into the client bundle by `next build`: a change means a new build.
BUILD_ENV = {"NEXT_PUBLIC_ASSISTANT_ID": ASSISTANT_ID, "NEXT_TELEMETRY_DISABLED": "1"}
# The CSS URL the layout's `Inter({subsets: ["latin"]})` asks Google for.
INTER_CSS = "https://fonts.googleapis.com/css2?family=Inter:wght@100..900&display=swap"


class Unavailable(Exception):
    """The UI cannot be had here (no source, no Node, no registry): a reason to skip."""


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "s3-chat-backend"


def built_app() -> Path:
    """The folder of the installed and built UI, made if missing or stale.

    A lock file keeps two test runs on one machine from building into the
    same folder at once.
    """
    if shutil.which("node") is None or shutil.which("npx") is None:
        raise Unavailable("Node.js and npm are not installed (apt-get install nodejs npm)")
    folder = cache_root() / f"agent-chat-ui-{COMMIT[:7]}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent / f"{folder.name}.lock"):
        installed = folder / "node_modules" / ".installed"
        if not installed.exists():
            shutil.rmtree(folder, ignore_errors=True)
            _extract_source(folder)
            _install(folder)
            installed.touch()
        stamp = folder / ".next" / "built-for"
        if not stamp.exists() or stamp.read_text() != _build_digest():
            _build(folder)
            stamp.write_text(_build_digest())
    return folder


def serve(folder: Path, port: int, logdir: Path, api_url: str) -> servers.Server:
    """`next start` on a loopback port; its `/api` route forwards to `api_url`."""
    next_bin = folder / "node_modules" / "next" / "dist" / "bin" / "next"
    env = {**BUILD_ENV, "LANGGRAPH_API_URL": api_url}
    server = servers.Server(f"agent-chat-ui-{port}",
                            ["node", str(next_bin), "start", str(folder), "-H", "127.0.0.1",
                             "-p", str(port)],
                            port, logdir / f"agent-chat-ui-{port}.log", env)
    return server.start(timeout=60)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _extract_source(folder: Path) -> None:
    given = os.environ.get("AGENT_CHAT_UI_SOURCE")
    if given:
        shutil.copytree(given, folder, ignore=shutil.ignore_patterns(".git", "node_modules",
                                                                     ".next"))
        return
    if MIRROR.is_dir():
        archive = subprocess.run(["git", f"--git-dir={MIRROR}", "archive", COMMIT],
                                 capture_output=True, timeout=120)
        if archive.returncode != 0:
            raise RuntimeError(f"the mirror at {MIRROR} has no commit {COMMIT[:7]}: "
                               f"{archive.stderr.decode()[-300:]}")
        folder.mkdir(parents=True)
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(folder, filter="data")
        return
    try:
        reply = httpx.get(TARBALL, follow_redirects=True, timeout=60)
        reply.raise_for_status()
    except httpx.HTTPError as error:
        raise Unavailable(f"agent-chat-ui's source is not here: no git mirror at {MIRROR}, "
                          f"AGENT_CHAT_UI_SOURCE unset, and {TARBALL} out of reach "
                          f"({error})") from error
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=BytesIO(reply.content), mode="r:gz") as tar:
        # GitHub puts everything under one top folder, named after the commit.
        for member in tar.getmembers():
            member.name = member.name.partition("/")[2]
        tar.extractall(folder, members=[m for m in tar.getmembers() if m.name],
                       filter="data")


def _install(folder: Path) -> None:
    done = subprocess.run(["npx", "--yes", PNPM, "install", "--frozen-lockfile"],
                          cwd=folder, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        # Most likely the registry is out of reach; a broken lockfile would
        # show the same way, so the reason is printed whole.
        shutil.rmtree(folder / "node_modules", ignore_errors=True)
        raise Unavailable(f"pnpm could not install agent-chat-ui: {done.stdout[-800:]}"
                          f"{done.stderr[-800:]}")


def _font_mock(folder: Path) -> Path:
    """Next's test hook for `next/font/google`: the CSS Google would answer,
    naming a local font file, so the build needs no network. The file is
    KaTeX's, installed beside it: any real woff2 will do for the tests."""
    font = folder / "node_modules" / "katex" / "dist" / "fonts" / "KaTeX_Main-Regular.woff2"
    css = ("/* latin */\n@font-face {\n  font-family: 'Inter';\n  font-style: normal;\n"
           "  font-weight: 100 900;\n  font-display: swap;\n"
           f"  src: url({font}) format('woff2');\n  unicode-range: U+0000-00FF;\n}}\n")
    mock = folder / "font-mock.cjs"
    mock.write_text(f"module.exports = {json.dumps({INTER_CSS: css})};\n")
    return mock


def _build_digest() -> str:
    return hashlib.sha256(json.dumps([COMMIT, BUILD_ENV], sort_keys=True).encode()).hexdigest()


def _build(folder: Path) -> None:
    shutil.rmtree(folder / ".next", ignore_errors=True)
    next_bin = folder / "node_modules" / "next" / "dist" / "bin" / "next"
    env = {**os.environ, **BUILD_ENV,
           "NEXT_FONT_GOOGLE_MOCKED_RESPONSES": str(_font_mock(folder))}
    # Its lint is its own affair, and costs a third of the build.
    done = subprocess.run(["node", str(next_bin), "build", "--no-lint"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"next build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
