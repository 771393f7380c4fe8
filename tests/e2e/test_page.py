"""The chat page in headless chromium (Playwright) against the real stack, with auth on.

One browser for the module; each test opens its own context, so its
sessionStorage (the key, the running job) starts empty.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect

from tests.helpers import API_KEYS, bearer
from tests.servers import ROOT
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("keyed_llm")]

KEY = bearer("page")
SCREENSHOT = ROOT / "docs" / "chat-page.png"
# How long any wait on the page may take: room for a machine busy with other work.
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)


@contextmanager
def tab_on(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A new tab on the stack's chat page, failing the test on any console error."""
    context = browser.new_context(base_url=str(stack.client.base_url),
                                  viewport={"width": 960, "height": 600})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    context.close()
    assert errors == []


@pytest.fixture
def page(browser: Browser, keyed: Stack) -> Iterator[Page]:
    with tab_on(browser, keyed) as tab:
        yield tab


def sign_in(page: Page) -> None:
    """Opens the page and answers its key prompt."""
    page.goto("/")
    dialog = page.get_by_role("dialog", name="API key")
    expect(dialog).to_be_visible()
    field = page.get_by_role("textbox", name="API key")
    expect(field).to_be_focused()
    field.fill(API_KEYS["page"])
    field.press("Enter")
    expect(dialog).to_be_hidden()


def send(page: Page, text: str) -> None:
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("textbox", name="Message").press("Enter")  # the keyboard sends


def last_reply(page: Page) -> Locator:
    return page.locator(".message.assistant .bubble").last


def bubbles(page: Page) -> Locator:
    return page.locator(".message .bubble")


def reply_done(page: Page, text: str) -> None:
    """Waits until the last reply reads `text` and no reply is on its way."""
    expect(last_reply(page)).to_have_text(text)
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()


def converse(page: Page, *messages: str) -> None:
    """Signs in and sends each message, waiting for its reply to be whole."""
    sign_in(page)
    for n, text in enumerate(messages, 1):
        send(page, text)
        expect(page.locator('.message.assistant[aria-busy="false"]')).to_have_count(n)
        expect(last_reply(page)).to_contain_text("echo:")


def own_message(page: Page, text: str) -> Locator:
    return page.locator(".message.human", has=page.locator(".bubble", has_text=text)).last


def history(stack: Stack, page: Page) -> list[str]:
    """The open conversation as GET /chat/history has it."""
    thread = page.evaluate("sessionStorage.getItem('chat.thread')")
    reply = stack.client.get(f"/chat/history/{thread}", headers=KEY)
    assert reply.status_code == 200, reply.text
    return [m["content"] for m in reply.json()["messages"]]


def test_the_page_and_its_files_need_no_key_and_carry_a_strict_csp(keyed: Stack) -> None:
    for path in ("/", "/static/chat.js", "/static/chat.css", "/static/js/markdown.js",
                 "/static/vendor/marked/marked.esm.js",
                 "/static/vendor/dompurify/purify.es.mjs"):
        reply = keyed.client.get(path)
        assert reply.status_code == 200, path
        policy = reply.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "default-src 'none'" in policy
    assert 'data-auth="required"' in keyed.client.get("/").text


def test_a_reply_streams_token_by_token_in_the_chosen_language(page: Page,
                                                               keyed: Stack) -> None:
    keyed.control(reply_tokens=40, token_delay=0.05)
    sign_in(page)
    page.get_by_label("Reply in").select_option("French")

    send(page, "Tell me a story")

    reply = last_reply(page)
    expect(reply).to_contain_text("w1")
    # Seen in the middle: tokens are on screen while the rest is still coming.
    assert "w39" not in reply.inner_text()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(reply).to_have_text(" ".join(f"w{i}" for i in range(40)))
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.locator(".threads li").first).to_contain_text("Tell me a story")
    system = keyed.llm_calls()[-1]["messages"][0]["content"]
    assert "French" in system
    shot = page.screenshot()
    assert shot.startswith(b"\x89PNG")
    # The README's picture; rewritten only when asked, so a test run leaves
    # the working tree as it was.
    if os.environ.get("UPDATE_SCREENSHOTS"):
        SCREENSHOT.write_bytes(shot)


def test_stop_ends_a_long_reply(page: Page, keyed: Stack) -> None:
    keyed.control(reply_tokens=2000, token_delay=0.05)
    sign_in(page)
    send(page, "A very long answer, please")
    expect(last_reply(page)).to_contain_text("w2")

    page.get_by_role("button", name="Stop").click()

    expect(page.locator(".message.assistant .note").last).to_have_text("Stopped.")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    assert "w1999" not in last_reply(page).inner_text()
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()


def test_a_reload_in_the_middle_of_a_reply_picks_it_up_again(page: Page,
                                                             keyed: Stack) -> None:
    keyed.control(reply_tokens=60, token_delay=0.05)
    sign_in(page)
    send(page, "Survive a reload")
    expect(last_reply(page)).to_contain_text("w2")

    page.reload()

    expect(page.get_by_role("dialog", name="API key")).to_be_hidden()  # kept for the tab
    expect(page.locator(".message.human .bubble").last).to_have_text("Survive a reload")
    expect(last_reply(page)).to_have_text(" ".join(f"w{i}" for i in range(60)))
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.locator(".message")).to_have_count(2)  # the turn once, from the history


def test_switching_and_deleting_conversations(page: Page, keyed: Stack) -> None:
    made = {}
    for topic in ("alpha topic", "beta topic"):
        reply = keyed.client.post("/chat", headers=KEY, json={"message": topic})
        assert reply.status_code == 200, reply.text
        made[topic] = reply.json()["thread_id"]
    sign_in(page)
    threads = page.locator(".threads")

    threads.locator(".thread-open", has_text="alpha topic").click()
    expect(page.locator(".message-list")).to_contain_text("echo: alpha topic")
    threads.locator(".thread-open", has_text="beta topic").click()
    expect(page.locator(".message-list")).to_contain_text("echo: beta topic")
    expect(page.locator(".message-list")).not_to_contain_text("alpha")

    page.once("dialog", lambda dialog: dialog.accept())
    threads.get_by_role("button", name="Delete “alpha topic”").click()

    expect(threads.locator(".thread-open", has_text="alpha topic")).to_have_count(0)
    expect(threads.locator(".thread-open", has_text="beta topic")).to_have_count(1)
    gone = keyed.client.get(f"/chat/history/{made['alpha topic']}", headers=KEY)
    assert gone.status_code == 404


def test_readable_on_a_phone(page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 760})
    sign_in(page)

    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(page.get_by_role("textbox", name="Message")).to_be_in_viewport()
    toggle = page.get_by_role("button", name="Conversations")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#threads-panel")).to_be_visible()
    toggle.click()

    # A reply with a long line of code scrolls inside its block, not the page.
    send(page, "Code:\n\n```\n" + "x = 1; " * 60 + "\n```")
    expect(last_reply(page).locator("pre code")).to_contain_text("x = 1;")
    expect(page.get_by_role("button", name="Copy reply")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_older_messages_load_when_scrolled_to_the_top(page: Page, keyed: Stack) -> None:
    reply = keyed.client.post("/chat", headers=KEY, json={"message": "a long talk"})
    assert reply.status_code == 200, reply.text
    thread = reply.json()["thread_id"]
    # The history pages as the API describes them: the newest page first, a
    # cursor to the one before it. Served here, so the page is tested on its
    # own, whatever the server's history holds.
    pages = {None: (range(40, 80), "older"), "older": (range(0, 40), None)}
    asked: list[str | None] = []

    def history(route: Route) -> None:
        before = parse_qs(urlparse(route.request.url).query).get("before", [None])[0]
        asked.append(before)
        numbers, cursor = pages[before]
        messages = [{"content": f"m{n}", "role": "human" if n % 2 == 0 else "assistant",
                     "timestamp": "2026-01-01T00:00:00Z"} for n in numbers]
        route.fulfill(json={"thread_id": thread, "messages": messages, "next_before": cursor})

    page.route(f"**/chat/history/{thread}?*", history)
    sign_in(page)
    page.locator(".threads .thread-open", has_text="a long talk").click()
    expect(page.locator(".message .bubble").last).to_have_text("m79")

    page.locator("#messages").evaluate("box => box.scrollTop = 0")

    expect(page.locator(".message .bubble").first).to_have_text("m0")
    expect(page.locator(".message")).to_have_count(80)
    assert asked == [None, "older"]


@pytest.mark.usefixtures("fresh_llm")
def test_without_auth_the_page_asks_for_no_key(browser: Browser, stack: Stack) -> None:
    with tab_on(browser, stack) as tab:
        tab.goto("/")
        send(tab, "no key needed")

        expect(last_reply(tab)).to_have_text("echo: no key needed")
        expect(tab.get_by_role("dialog", name="API key")).to_be_hidden()


# --- Markdown, copy, edit and regenerate ---------------------------------------

MARKDOWN = ("Here is a list:\n\n- one\n- **two**\n\n```\nprint('hi')\n```\n\n"
            "See [the docs](https://example.com/docs).")


def test_a_reply_renders_as_markdown_with_safe_links(page: Page) -> None:
    converse(page, MARKDOWN)

    reply = last_reply(page)
    expect(reply.locator("li")).to_have_count(2)
    expect(reply.locator("strong")).to_have_text("two")
    expect(reply.locator("pre code")).to_have_text("print('hi')")
    link = reply.get_by_role("link", name="the docs")
    expect(link).to_have_attribute("href", "https://example.com/docs")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    # One's own message shows as typed.
    expect(page.locator(".message.human .bubble").last).to_have_text(MARKDOWN)


def test_a_reply_with_html_or_script_links_runs_nothing(page: Page) -> None:
    attack = ('<img src=x onerror="window.pwned=1"> <script>window.pwned=2</script> '
              '[click me](javascript:window.pwned=3) '
              '<a href="javascript:window.pwned=4" onclick="window.pwned=5">or me</a> '
              '<svg onload="window.pwned=6"></svg> [data](data:text/html,hi)')
    sign_in(page)
    send(page, attack)
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    reply = last_reply(page)
    expect(reply).to_contain_text("click me")

    for name in ("click me", "or me", "data"):
        reply.get_by_text(name).click()
    assert page.evaluate("window.pwned") is None
    assert page.evaluate("""() => [...document.querySelectorAll('.markdown *')].flatMap(
        e => [...e.attributes].map(a => a.name + '=' + a.value))
        .filter(a => /^on|javascript:|data:/i.test(a) || /=\\s*(javascript|data):/i.test(a))
        """) == []
    expect(reply.locator("img, script, svg")).to_have_count(0)
    assert len(page.context.pages) == 1  # no link opened anything


def test_copy_puts_the_reply_s_markdown_on_the_clipboard(page: Page) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    converse(page, MARKDOWN)

    copy = page.get_by_role("button", name="Copy reply").last
    copy.click()

    expect(copy).to_have_text("Copied")
    expect(page.get_by_role("status")).to_have_text("Reply copied.")
    assert page.evaluate("navigator.clipboard.readText()") == f"echo: {MARKDOWN}"
    expect(copy).to_have_text("Copy")


def test_editing_a_message_branches_and_a_reload_shows_the_branch(page: Page,
                                                                  keyed: Stack) -> None:
    converse(page, "first", "second")

    own_message(page, "second").get_by_role("button", name="Edit message").click()
    box = page.get_by_role("textbox", name="Edit message")
    expect(box).to_have_value("second")
    box.fill("second, edited")
    box.press("Enter")

    reply_done(page, "echo: second, edited")
    branch = ["first", "echo: first", "second, edited", "echo: second, edited"]
    expect(bubbles(page)).to_have_text(branch)
    page.reload()
    expect(bubbles(page)).to_have_text(branch)
    assert history(keyed, page) == branch

    # The first message too: a new thread's first turn keeps the empty checkpoint.
    own_message(page, "first").get_by_role("button", name="Edit message").click()
    page.get_by_role("textbox", name="Edit message").fill("first, edited")
    page.get_by_role("button", name="Send edited message").click()

    reply_done(page, "echo: first, edited")
    expect(bubbles(page)).to_have_text(["first, edited", "echo: first, edited"])
    page.reload()
    expect(bubbles(page)).to_have_text(["first, edited", "echo: first, edited"])
    assert history(keyed, page) == ["first, edited", "echo: first, edited"]


def test_a_message_without_a_checkpoint_before_it_stays_and_the_page_says_so(
        page: Page, keyed: Stack) -> None:
    # A client that names the thread of its first turn: that turn keeps its
    # last checkpoint only, so nothing is kept from before its message.
    thread = f"named-{uuid.uuid4().hex}"
    made = keyed.client.post("/chat", headers=KEY, json={"message": "named", "thread_id": thread})
    assert made.status_code == 200, made.text
    sign_in(page)
    page.locator(".threads .thread-open", has_text="named").first.click()
    expect(bubbles(page)).to_have_text(["named", "echo: named"])

    own_message(page, "named").get_by_role("button", name="Edit message").click()
    page.get_by_role("textbox", name="Edit message").fill("renamed")
    page.get_by_role("button", name="Send edited message").click()

    expect(page.get_by_role("status")).to_contain_text("can no longer be changed")
    expect(bubbles(page)).to_have_text(["named", "echo: named"])


def test_regenerating_a_reply_asks_again_and_replaces_it(page: Page, keyed: Stack) -> None:
    converse(page, "one", "two")
    keyed.groq_client.delete("/_calls").raise_for_status()
    regenerate = page.get_by_role("button", name="Regenerate reply")

    # A turn of POST /chat: its question is asked again from the turn before.
    keyed.control(reply_tokens=3)  # a reply the first one was not
    regenerate.click()
    reply_done(page, "w0 w1 w2")
    expect(bubbles(page)).to_have_text(["one", "echo: one", "two", "w0 w1 w2"])
    # A turn of a run keeps the checkpoint before its reply: the reply alone runs again.
    keyed.control(reply_tokens=4)
    regenerate.click()
    reply_done(page, "w0 w1 w2 w3")
    conversation = ["one", "echo: one", "two", "w0 w1 w2 w3"]
    expect(bubbles(page)).to_have_text(conversation)

    asked = [c["messages"][-1]["content"] for c in keyed.llm_calls()]
    assert asked == ["two", "two"]
    expect(regenerate).to_have_count(1)  # on the last reply only
    page.reload()
    expect(bubbles(page)).to_have_text(conversation)
    assert history(keyed, page) == conversation


def focus_by_tab(page: Page, name: str, key: str = "Tab", limit: int = 40) -> None:
    """Presses Tab (or `key`) until the element named `name` has the focus."""
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == name:
            return
    raise AssertionError(f"Tab never reached {name!r}")


def test_the_keyboard_alone_sends_edits_and_copies(page: Page) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    converse(page, "hello", "by keyboard")

    focus_by_tab(page, "Edit message")  # the first message's
    focus_by_tab(page, "Edit message")
    edit = own_message(page, "by keyboard").get_by_role("button", name="Edit message")
    expect(edit).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    page.keyboard.press("Enter")
    box = page.get_by_role("textbox", name="Edit message")
    expect(box).to_be_focused()
    page.keyboard.type(" and more")
    page.keyboard.press("Escape")  # leaves the message as it was
    expect(box).to_have_count(0)
    expect(edit).to_be_focused()
    expect(own_message(page, "by keyboard").locator(".bubble").first).to_have_text("by keyboard")

    page.keyboard.press("Enter")
    expect(box).to_be_focused()
    page.keyboard.press("End")
    page.keyboard.type(", edited")
    page.keyboard.press("Enter")
    reply_done(page, "echo: by keyboard, edited")
    expect(page.get_by_role("textbox", name="Message", exact=True)).to_be_focused()

    focus_by_tab(page, "Copy reply", key="Shift+Tab")  # back from the message box
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Copy reply").last).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "echo: by keyboard, edited"
