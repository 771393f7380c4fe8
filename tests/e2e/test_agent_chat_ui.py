"""agent-chat-ui, the official LangGraph chat UI (Next.js), in headless chromium
against the real stack, in both of the ways its README sets it up:

- `direct`: the browser calls the gateway itself (CORS_ORIGINS names the
  UI's origin);
- `proxy`: the browser calls the UI's own `/api` route, which forwards to
  the gateway (`LANGGRAPH_API_URL`), as its production set-up does.

The UI is built once and cached (tests/e2e/agent_chat_ui.py); each set-up
gets one `next start` for the module. The stack is this module's own, for
its CORS setting and so that every request in its gateway's log is the UI's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests import servers
from tests.e2e import agent_chat_ui
from tests.stack import Stack, launch

# A cold cache installs and builds the UI inside the first test's set-up.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class Ui:
    """One set-up: its name, the UI's address, the API address its page is
    given, the stack."""

    name: str
    url: str
    api_url: str
    stack: Stack

    def page_url(self, **params: str) -> str:
        return f"{self.url}/?{urlencode({'apiUrl': self.api_url, **params})}"


@pytest.fixture(scope="module")
def built_app() -> Path:
    try:
        return agent_chat_ui.built_app()
    except agent_chat_ui.Unavailable as reason:
        pytest.skip(str(reason))


@pytest.fixture(scope="module")
def ui_ports() -> dict[str, int]:
    return {"direct": servers.free_port(), "proxy": servers.free_port()}


@pytest.fixture(scope="module")
def ui_stack(redis_url: str, s3_endpoint: str, workdir: Path,
             ui_ports: dict[str, int], built_app: Path) -> Iterator[Stack]:
    # Only the direct set-up's page calls the gateway from the browser.
    with launch(redis_url, s3_endpoint, workdir / "agent-chat-ui", workers=1,
                CORS_ORIGINS=f"http://127.0.0.1:{ui_ports['direct']}",
                LOG_JSON="true") as stack:
        yield stack


@pytest.fixture(scope="module", params=["direct", "proxy"])
def ui(request: pytest.FixtureRequest, ui_stack: Stack, ui_ports: dict[str, int],
       built_app: Path, workdir: Path) -> Iterator[Ui]:
    port = ui_ports[request.param]
    gateway = str(ui_stack.client.base_url).rstrip("/")
    server = agent_chat_ui.serve(built_app, port, workdir / "agent-chat-ui", gateway)
    url = f"http://127.0.0.1:{port}"
    api_url = gateway if request.param == "direct" else f"{url}/api"
    try:
        yield Ui(request.param, url, api_url, ui_stack)
    finally:
        server.stop()


@contextmanager
def clean_run(ui: Ui) -> Iterator[None]:
    """Fails the test if the gateway answered any request made meanwhile with a
    4xx or 5xx."""
    start = len(ui.stack.gateway.log())
    yield
    failed = []
    for line in ui.stack.gateway.log()[start:].splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("event") == "request" and entry.get("status", 200) >= 400:
            failed.append(entry)
    assert failed == []


# The UI tells of a failed run or an unreachable server in a toast (sonner),
# without a console error; each toast is reported as it appears, whatever
# page the tab is on by then.
REPORT_TOASTS = """
new MutationObserver(() => {
  for (const toast of document.querySelectorAll("[data-sonner-toast]:not([data-seen])")) {
    toast.dataset.seen = "1";
    window.reportToast(toast.innerText);
  }
}).observe(document, {childList: true, subtree: true});
"""


@pytest.fixture
def page(browser: Browser, ui: Ui) -> Iterator[Page]:
    """A new tab (wide enough for the history sidebar), failing the test on any
    console error, uncaught exception or toast in it. The Groq-like server
    starts each test with its defaults (echo, no delay)."""
    ui.stack.groq_client.post("/_control/reset").raise_for_status()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    context.expose_function("reportToast", lambda text: errors.append(f"toast: {text}"))
    context.add_init_script(REPORT_TOASTS)
    tab = context.new_page()
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    with clean_run(ui):
        yield tab
        context.close()
    assert errors == []


def send(page: Page, text: str) -> None:
    page.get_by_placeholder("Type your message...").fill(text)
    page.get_by_role("button", name="Send", exact=True).click()


def idle(page: Page) -> None:
    """Waits until the UI is ready for the next message (no run in flight)."""
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()


def human(page: Page) -> Locator:
    return page.locator("p.bg-muted")  # a human message's bubble


def replies(page: Page) -> Locator:
    return page.locator(".group.mr-auto")  # an AI message, with its buttons


def thread_id(page: Page) -> str:
    return parse_qs(urlparse(page.url).query)["threadId"][0]


def words(count: int) -> str:
    """What the Groq-like server replies when told `reply_tokens=count`."""
    return " ".join(f"w{i}" for i in range(count))


def test_a_conversation_its_history_an_edit_and_a_regenerate(page: Page, ui: Ui) -> None:
    # Both set-ups list the threads of one stack: each names its own.
    first, edited = f"hello from {ui.name}", f"edited from {ui.name}"
    ui.stack.control(reply_tokens=60, token_delay=0.05)
    page.goto(ui.page_url())

    send(page, first)

    # Tokens are on screen while the rest is still coming.
    expect(replies(page).last).to_contain_text("w2")
    assert "w59" not in replies(page).last.inner_text()
    expect(replies(page).last).to_contain_text(words(60))
    idle(page)

    ui.stack.control(reply_tokens=None, token_delay=0)
    send(page, "and again")
    expect(replies(page).last).to_contain_text("echo: and again")
    expect(human(page)).to_have_text([first, "and again"])
    idle(page)
    made = thread_id(page)

    # A reload shows the thread in the page's address, from the server.
    page.reload()
    expect(human(page)).to_have_text([first, "and again"])
    expect(replies(page).last).to_contain_text("echo: and again")
    # A new page, without the thread in its address: the sidebar lists it.
    page.goto(ui.page_url(chatHistoryOpen="true"))
    page.get_by_role("button", name=first, exact=True).click()
    expect(human(page)).to_have_text([first, "and again"])
    expect(replies(page)).to_have_count(2)
    expect(replies(page).last).to_contain_text("echo: and again")
    assert thread_id(page) == made
    idle(page)

    # Edit the first message: a branch from before it; the second turn is gone.
    human(page).first.hover()
    page.get_by_role("button", name="Edit", exact=True).first.click()
    editing = page.locator("textarea").first
    expect(editing).to_have_value(first)
    editing.fill(edited)
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(replies(page).last).to_contain_text(f"echo: {edited}")
    expect(human(page)).to_have_text([edited])
    expect(replies(page)).to_have_count(1)
    idle(page)

    # Regenerate the last reply: the same question, another answer.
    ui.stack.control(reply_tokens=5)
    replies(page).last.hover()
    page.get_by_role("button", name="Refresh", exact=True).last.click()
    expect(replies(page).last).to_contain_text(words(5))
    expect(human(page)).to_have_text([edited])
    expect(replies(page)).to_have_count(1)
    idle(page)
    state = ui.stack.client.get(f"/threads/{made}/state").json()
    assert [m["type"] for m in state["values"]["messages"]] == ["human", "ai"]
    assert state["values"]["messages"][-1]["content"] == words(5)


def test_stop_a_reply_mid_stream(page: Page, ui: Ui) -> None:
    ui.stack.control(reply_tokens=100, token_delay=0.05)
    page.goto(ui.page_url())
    send(page, "a long answer, please")
    expect(replies(page).last).to_contain_text("w2")

    page.get_by_role("button", name="Cancel", exact=True).click()

    idle(page)
    # The run goes on without a reader (the hook asks for on_disconnect
    # "continue", as against the LangGraph Server); the page shows no more of it.
    made = thread_id(page)
    runs = ui.stack.client.get(f"/threads/{made}/runs").json()
    assert len(runs) == 1
    run_path = f"/threads/{made}/runs/{runs[0]['run_id']}"
    ui.stack.client.get(f"{run_path}/join").raise_for_status()
    assert ui.stack.client.get(run_path).json()["status"] == "success"
    assert words(100) not in replies(page).last.inner_text()
    # Its whole reply was kept: a reload shows it.
    page.reload()
    expect(replies(page).last).to_contain_text(words(100))
