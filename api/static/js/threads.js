// The list of conversations (GET /chat/threads), newest first.

import { api, detailOf, withKey } from "./api.js";
import { openThread, newChat } from "./conversation.js";
import { runningJob } from "./reply.js";
import { $, RUNNING, report, showStatus, state, store } from "./page.js";

const THREADS_PAGE = 30;

export async function loadThreads(more = false) {
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

export function markOpenThread() {
  for (const item of $("threads").children) {
    const open = item.dataset.threadId === state.threadId;
    item.setAttribute("aria-current", open ? "true" : "false");
  }
}

async function deleteThread(threadId, title) {
  if (!window.confirm(`Delete “${title}”? This cannot be undone.`)) return;
  const id = encodeURIComponent(threadId);
  // DELETE /threads also forgets the thread's record, which a branch (a run of
  // the LangGraph API) made; it knows no thread whose first turn is still
  // running, which DELETE /chat/history does.
  let response = await api(`/threads/${id}`, { method: "DELETE" });
  if (response.status === 404) response = await api(`/chat/history/${id}`, { method: "DELETE" });
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

export function closeNarrowPanel() {
  $("threads-panel").classList.remove("open");
  $("toggle-threads").setAttribute("aria-expanded", "false");
}
