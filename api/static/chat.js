// The chat page: plain JavaScript served as is (no build step, no third-party code).
//
// A reply streams from GET /chat/jobs/{id}/events. EventSource cannot send an
// Authorization header, so the stream is read with fetch() and parsed here;
// one code path serves auth on and off. The API key and the running job live
// in sessionStorage: they last as long as the tab, and a reload picks the
// reply's stream up again from its first event.

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;
const KEY = "chat.apiKey";
const OPEN = "chat.thread";
const RUNNING = "chat.running";
const LANGUAGE = "chat.language";
const THREADS_PAGE = 30;
const HISTORY_PAGE = 50;
const STREAM_RETRIES = 5;

const state = {
  threadId: null, // the open conversation; null before its first message
  threads: new Map(), // thread id -> its entry in GET /chat/threads
  threadsBefore: null, // cursor of the next page of conversations
  olderBefore: null, // cursor of the open conversation's older messages
  loadingOlder: false,
  reading: null, // AbortController of the stream being read
};

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = store.getItem(KEY);
  if (key) headers.set("Authorization", `Bearer ${key}`);
  if (options.body !== undefined) headers.set("Content-Type", "application/json");
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) throw new Unauthorized();
  return response;
}

async function detailOf(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function showStatus(text) {
  $("status").textContent = text;
}

// --- the API key -----------------------------------------------------------

function askKey(problem = "") {
  const dialog = $("key-dialog");
  $("key-error").textContent = problem;
  $("key").value = "";
  dialog.showModal();
  $("key").focus();
  return new Promise((resolve) => {
    $("key-form").onsubmit = (event) => {
      event.preventDefault();
      const key = $("key").value.trim();
      if (!key) return;
      store.setItem(KEY, key);
      dialog.close();
      resolve();
    };
  });
}

// Runs `work`; when the server refuses the key, asks for one and runs it again.
async function withKey(work) {
  for (;;) {
    try {
      return await work();
    } catch (error) {
      if (!(error instanceof Unauthorized)) throw error;
      const had = store.getItem(KEY);
      store.removeItem(KEY);
      await askKey(had ? "That key was not accepted." : "");
    }
  }
}

// --- the list of conversations ---------------------------------------------

async function loadThreads(more = false) {
  const params = new URLSearchParams({ limit: String(THREADS_PAGE) });
  if (more && state.threadsBefore) params.set("before", state.threadsBefore);
  const response = await api(`/chat/threads?${params}`);
  if (!response.ok) {
    showStatus(`Could not load your conversations: ${await detailOf(response)}`);
    return;
  }
  const page = await response.json();
  if (!more) {
    state.threads.clear();
    $("threads").replaceChildren();
  }
  for (const thread of page.threads) {
    state.threads.set(thread.thread_id, thread);
    $("threads").append(threadItem(thread));
  }
  state.threadsBefore = page.next_before;
  $("more-threads").hidden = !page.next_before;
  markOpenThread();
}

function threadItem(thread) {
  const item = document.createElement("li");
  item.dataset.threadId = thread.thread_id;
  const title = thread.title || "Untitled";
  const open = document.createElement("button");
  open.type = "button";
  open.className = "thread-open";
  const name = document.createElement("span");
  name.className = "thread-title";
  name.textContent = title;
  const meta = document.createElement("span");
  meta.className = "thread-meta";
  const count = thread.messages === 1 ? "1 message" : `${thread.messages} messages`;
  meta.textContent = `${count} · ${new Date(thread.updated_at).toLocaleString()}`;
  open.append(name, meta);
  open.addEventListener("click", () => {
    closeNarrowPanel();
    withKey(() => openThread(thread.thread_id)).catch(report);
  });
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "thread-delete";
  remove.textContent = "×";
  remove.setAttribute("aria-label", `Delete “${title}”`);
  remove.addEventListener("click", () => withKey(() => deleteThread(thread.thread_id, title))
    .catch(report));
  item.append(open, remove);
  return item;
}

function markOpenThread() {
  for (const item of $("threads").children) {
    const open = item.dataset.threadId === state.threadId;
    item.setAttribute("aria-current", open ? "true" : "false");
  }
}

async function deleteThread(threadId, title) {
  if (!window.confirm(`Delete “${title}”? This cannot be undone.`)) return;
  const response = await api(`/chat/history/${encodeURIComponent(threadId)}`,
    { method: "DELETE" });
  if (!response.ok && response.status !== 404) {
    showStatus(`Could not delete it: ${await detailOf(response)}`);
    return;
  }
  const running = runningJob();
  if (running && running.threadId === threadId) store.removeItem(RUNNING);
  if (state.threadId === threadId) newChat();
  await loadThreads();
  showStatus("");
  $("new-chat").focus();
}

// --- the open conversation -------------------------------------------------

function newChat() {
  stopReading();
  state.threadId = null;
  state.olderBefore = null;
  store.removeItem(OPEN);
  $("message-list").replaceChildren();
  $("older-status").hidden = true;
  $("chat-title").textContent = "New chat";
  setBusy(false);
  markOpenThread();
  $("message").focus();
}

async function openThread(threadId) {
  stopReading();
  state.threadId = threadId;
  state.olderBefore = null;
  store.setItem(OPEN, threadId);
  $("message-list").replaceChildren();
  $("older-status").hidden = true;
  const known = state.threads.get(threadId);
  $("chat-title").textContent = known ? known.title : "Conversation";
  markOpenThread();
  setBusy(false);
  showStatus("");
  let running = runningJob();
  if (running && running.threadId === threadId) {
    const job = await api(`/chat/jobs/${encodeURIComponent(running.jobId)}`);
    if (!job.ok || ["succeeded", "failed", "cancelled"].includes((await job.json()).status)) {
      store.removeItem(RUNNING); // it ended while no one watched: history has it
      running = null;
    }
  }
  // A thread whose first turn is still running has nothing stored yet.
  if (!known || known.messages > 0) await loadHistory();
  if (running && running.threadId === threadId) {
    appendMessage("human", running.message);
    follow(running, appendMessage("assistant", ""), true);
  }
  scrollToEnd();
}

async function loadHistory(before = null) {
  const params = new URLSearchParams({ limit: String(HISTORY_PAGE) });
  if (before) params.set("before", before);
  const threadId = state.threadId;
  const response = await api(`/chat/history/${encodeURIComponent(threadId)}?${params}`);
  if (threadId !== state.threadId) return; // another one was opened meanwhile
  if (response.status === 404) return;
  if (!response.ok) {
    showStatus(`Could not load the conversation: ${await detailOf(response)}`);
    return;
  }
  const page = await response.json();
  const list = $("message-list");
  const box = $("messages");
  const height = box.scrollHeight;
  const items = page.messages.map((m) => messageItem(m.role, m.content));
  list.prepend(...items);
  // Older messages go above what the reader is looking at, which stays put.
  if (before) box.scrollTop += box.scrollHeight - height;
  // Today's servers may answer one page with no cursor: then it is the whole thread.
  state.olderBefore = page.next_before || null;
  $("older-status").hidden = !state.olderBefore;
  $("older-status").textContent = "Scroll up for older messages";
}

async function loadOlder() {
  if (!state.olderBefore || state.loadingOlder) return;
  state.loadingOlder = true;
  try {
    await withKey(() => loadHistory(state.olderBefore));
  } finally {
    state.loadingOlder = false;
  }
}

function messageItem(role, text) {
  const item = document.createElement("li");
  item.className = `message ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "human" ? "You" : "Assistant";
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.textContent = text;
  item.append(who, bubble);
  return item;
}

function appendMessage(role, text) {
  const item = messageItem(role, text);
  $("message-list").append(item);
  scrollToEnd();
  return item;
}

function note(item, text, failed = false) {
  const line = document.createElement("span");
  line.className = "note";
  line.textContent = text;
  item.append(line);
  item.classList.toggle("failed", failed);
}

function scrollToEnd() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

// --- sending, streaming, stopping ------------------------------------------

function runningJob() {
  try {
    return JSON.parse(store.getItem(RUNNING) || "null");
  } catch {
    return null;
  }
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").hidden = !busy;
}

function stopReading() {
  if (state.reading) state.reading.abort();
  state.reading = null;
}

async function send(text) {
  const body = { message: text, thread_id: state.threadId, language: $("language").value };
  const response = await api("/chat?wait=false", { method: "POST", body: JSON.stringify(body) });
  if (response.status !== 202) {
    const wait = response.headers.get("Retry-After");
    showStatus(await detailOf(response) + (wait ? ` (try again in ${wait} s)` : ""));
    return false;
  }
  const job = await response.json();
  const running = { jobId: job.job_id, threadId: job.thread_id, message: text };
  store.setItem(RUNNING, JSON.stringify(running));
  state.threadId = job.thread_id;
  store.setItem(OPEN, job.thread_id);
  showStatus("");
  appendMessage("human", text);
  follow(running, appendMessage("assistant", ""), false);
  await loadThreads();
  const listed = state.threads.get(job.thread_id);
  if (listed) $("chat-title").textContent = listed.title;
  return true;
}

// Reads the job's events into `item` until its outcome; after a dropped
// connection it resumes just after the last event it saw.
async function follow(running, item, resumed) {
  stopReading();
  const reading = new AbortController();
  state.reading = reading;
  setBusy(true);
  const bubble = item.querySelector(".bubble");
  // Screen readers announce the reply once it is whole, not at every token.
  item.setAttribute("aria-busy", "true");
  let lastId = null;
  let text = "";
  for (let failures = 0; failures <= STREAM_RETRIES;) {
    try {
      const headers = lastId ? { "Last-Event-ID": lastId } : {};
      const response = await api(`/chat/jobs/${encodeURIComponent(running.jobId)}/events`,
        { headers, signal: reading.signal });
      if (!response.ok) {
        note(item, `The reply is lost: ${await detailOf(response)}`, true);
        return ended(running, reading, item);
      }
      for await (const event of readEvents(response.body)) {
        if (event.id) lastId = event.id;
        const data = JSON.parse(event.data);
        if (event.type === "token") {
          text += data.text;
          bubble.textContent = text;
          scrollToEnd();
        } else if (event.type === "reset") {
          text = ""; // the job started over: what came before is void
          bubble.textContent = "";
        } else if (event.type === "done") {
          bubble.textContent = data.response;
          await ended(running, reading, item);
          if (resumed) await reload(); // the history may hold this turn by now
          return;
        } else if (event.type === "error") {
          note(item, `The reply failed: ${data.detail}`, true);
          return ended(running, reading, item);
        } else if (event.type === "cancelled") {
          note(item, "Stopped.");
          return ended(running, reading, item);
        }
      }
    } catch (error) {
      if (reading.signal.aborted) return;
      if (error instanceof Unauthorized) throw error;
    }
    failures += 1; // the stream closed before the outcome: read on after lastId
    await new Promise((resolve) => setTimeout(resolve, 300 * failures));
  }
  showStatus("Lost the reply's stream. Reload the page to pick it up again.");
  item.setAttribute("aria-busy", "false");
  setBusy(false);
}

async function ended(running, reading, item) {
  item.setAttribute("aria-busy", "false");
  const stored = runningJob();
  if (stored && stored.jobId === running.jobId) store.removeItem(RUNNING);
  if (state.reading === reading) {
    state.reading = null;
    setBusy(false);
  }
  await withKey(() => loadThreads());
}

async function reload() {
  if (state.threadId) await openThread(state.threadId);
}

// Server-Sent Events from a fetch() body: {type, data, id} for each event.
async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { type: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (;;) {
      const end = buffer.search(/\r\n|\r|\n/);
      if (end < 0 || (buffer[end] === "\r" && end === buffer.length - 1)) break;
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
      if (line === "") {
        if (event.data.length) yield { type: event.type, data: event.data.join("\n"), id: event.id };
        event = { type: "message", data: [], id: null };
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const raw = colon < 0 ? "" : line.slice(colon + 1);
        const text = raw.startsWith(" ") ? raw.slice(1) : raw;
        if (field === "event") event.type = text;
        else if (field === "data") event.data.push(text);
        else if (field === "id") event.id = text;
      }
    }
  }
}

async function stop() {
  const running = runningJob();
  if (!running) return;
  const response = await api(`/chat/jobs/${encodeURIComponent(running.jobId)}/cancel`,
    { method: "POST" });
  // 409: it ended first; its stream says how.
  if (!response.ok && response.status !== 409) showStatus(await detailOf(response));
  $("message").focus();
}

function closeNarrowPanel() {
  $("threads-panel").classList.remove("open");
  $("toggle-threads").setAttribute("aria-expanded", "false");
}

function report(error) {
  showStatus(`Something went wrong: ${error.message}`);
}

// --- wiring ----------------------------------------------------------------

function wire() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value;
    if (!text.trim() || $("send").disabled) return;
    withKey(() => send(text)).then((sent) => {
      if (sent) $("message").value = "";
    }).catch(report);
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => withKey(stop).catch(report));
  $("new-chat").addEventListener("click", () => {
    closeNarrowPanel();
    newChat();
  });
  $("more-threads").addEventListener("click", () => withKey(() => loadThreads(true))
    .catch(report));
  $("messages").addEventListener("scroll", () => {
    if ($("messages").scrollTop < 40) loadOlder().catch(report);
  });
  $("language").addEventListener("change", () => store.setItem(LANGUAGE, $("language").value));
  $("toggle-threads").addEventListener("click", () => {
    const open = $("threads-panel").classList.toggle("open");
    $("toggle-threads").setAttribute("aria-expanded", String(open));
  });
  // The key is needed to go on: Escape does not dismiss its dialog.
  $("key-dialog").addEventListener("cancel", (event) => event.preventDefault());
}

async function start() {
  wire();
  const language = store.getItem(LANGUAGE);
  if (language) $("language").value = language;
  if (document.body.dataset.auth === "required" && !store.getItem(KEY)) await askKey();
  await withKey(() => loadThreads());
  const running = runningJob();
  const open = running ? running.threadId : store.getItem(OPEN);
  if (open) await withKey(() => openThread(open));
  else newChat();
}

start().catch(report);
