"""The LangGraph JavaScript SDK (`@langchain/langgraph-sdk` from npm, the version
agent-chat-ui pins) making the calls its `useStream` hook makes, against the real stack.

The package is installed once into a cache outside the checkout
(`~/.cache/s3-chat-backend/js-sdk-<version>`), so later runs reuse it; the
test skips, saying why, only where Node or the npm registry cannot be reached.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("fresh_llm")]

SDK_VERSION = "1.8.10"
SCRIPT = Path(__file__).parent.parent / "js" / "use_stream_calls.mjs"


@pytest.fixture(scope="module")
def js_sdk() -> Path:
    """A folder with the SDK installed and the script beside it."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed (apt-get install nodejs npm)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = cache / "s3-chat-backend" / f"js-sdk-{SDK_VERSION}"
    if not (folder / "node_modules" / "@langchain" / "langgraph-sdk").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text('{"private": true, "type": "module"}')
        installed = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent",
             f"@langchain/langgraph-sdk@{SDK_VERSION}"],
            cwd=folder, capture_output=True, text=True, timeout=300)
        if installed.returncode != 0:
            pytest.skip(f"npm could not install the SDK: {installed.stderr[-500:]}")
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


def use_stream(js_sdk: Path, stack: Stack, assistant: str) -> dict[str, Any]:
    ran = subprocess.run(["node", str(js_sdk / SCRIPT.name), str(stack.client.base_url),
                          assistant], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    result: dict[str, Any] = json.loads(ran.stdout)
    return result


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


def test_the_calls_use_stream_makes_for_a_chat(js_sdk: Path, stack: Stack) -> None:
    calls = use_stream(js_sdk, stack, "chat")

    assert calls["info"] == 200
    for turn, said in (("first", "hello there"), ("second", "and again")):
        events = calls[turn]
        assert events[0]["event"] == "metadata"
        tokens = [e["data"][0]["content"] for e in events if e["event"] == "messages"]
        assert len(tokens) > 1  # the reply streamed in pieces
        final = [e["data"] for e in events if e["event"] == "values"][-1]["messages"]
        assert "".join(tokens) == text_of(final[-1]["content"]) == f"echo: {said}"
        assert all(e["id"] for e in events if e["event"] != "metadata")  # resumable
    final = calls["state"]["messages"]
    assert [text_of(m["content"]) for m in final] == [
        "hello there", "echo: hello there", "and again", "echo: and again"]
    assert calls["historyLength"] >= 1
    assert calls["threadId"] in calls["found"]  # the sidebar finds it by graph_id
    assert calls["runs"] == ["success", "success"]
    assert calls["rejoined"][0] == "metadata" and "values" in calls["rejoined"]
