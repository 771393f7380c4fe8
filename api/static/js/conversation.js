// The open conversation: opening one, its history page by page, a new one.

import { api, detailOf, withKey } from "./api.js";
import { appendMessage, messageItem, refreshActions } from "./messages.js";
import { $, OPEN, RUNNING, scrollToEnd, showStatus, state, store } from "./page.js";
import { follow, runningJob, setBusy, stopReading } from "./reply.js";
import { markOpenThread } from "./threads.js";

const HISTORY_PAGE = 50;
const ENDED = ["succeeded", "failed", "cancelled"];

export function newChat() {
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

export async function openThread(threadId) {
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
    if (!job.ok || ENDED.includes((await job.json()).status)) {
      store.removeItem(RUNNING); // it ended while no one watched: history has it
      running = null;
    }
  }
  // A thread whose first turn is still running has nothing stored yet.
  if (!known || known.messages > 0) await loadHistory();
  if (running && running.threadId === threadId) {
    // A regenerated reply has no message of its own.
    if (running.message) appendMessage("human", running.message);
    follow(running, appendMessage("assistant", ""), true);
  }
  scrollToEnd();
}

// Opens the conversation again: its history holds what was just stored.
export async function reload() {
  if (state.threadId) await openThread(state.threadId);
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
  const box = $("messages");
  const height = box.scrollHeight;
  $("message-list").prepend(...page.messages.map((m) => messageItem(m.role, m.content)));
  refreshActions();
  // Older messages go above what the reader is looking at, which stays put.
  if (before) box.scrollTop += box.scrollHeight - height;
  // Today's servers may answer one page with no cursor: then it is the whole thread.
  state.olderBefore = page.next_before || null;
  $("older-status").hidden = !state.olderBefore;
  $("older-status").textContent = "Scroll up for older messages";
}

export async function loadOlder() {
  if (!state.olderBefore || state.loadingOlder) return;
  state.loadingOlder = true;
  try {
    await withKey(() => loadHistory(state.olderBefore));
  } finally {
    state.loadingOlder = false;
  }
}
