// Sending a message, streaming its reply, stopping it.
//
// A reply is a job: the page posts with wait=false, keeps the job in
// sessionStorage, and reads GET /chat/jobs/{id}/events. After a dropped
// connection it resumes just after the last event it saw; after a reload the
// stream is read again from its first event.

import { api, detailOf, postJson, Unauthorized, withKey } from "./api.js";
import { reload } from "./conversation.js";
import { progressive } from "./markdown.js";
import { appendMessage, note, refreshActions, setText } from "./messages.js";
import { $, OPEN, RUNNING, showStatus, state, store } from "./page.js";
import { readEvents } from "./sse.js";
import { loadThreads } from "./threads.js";

const STREAM_RETRIES = 5;

export function runningJob() {
  try {
    return JSON.parse(store.getItem(RUNNING) || "null");
  } catch {
    return null;
  }
}

export function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy;
  $("stop").hidden = !busy;
  refreshActions();
}

export function stopReading() {
  if (state.reading) state.reading.abort();
  state.reading = null;
}

export async function send(text) {
  const body = { message: text, thread_id: state.threadId, language: $("language").value };
  const response = await postJson("/chat?wait=false", body);
  if (response.status !== 202) {
    const wait = response.headers.get("Retry-After");
    showStatus(await detailOf(response) + (wait ? ` (try again in ${wait} s)` : ""));
    return false;
  }
  const job = await response.json();
  state.threadId = job.thread_id;
  store.setItem(OPEN, job.thread_id);
  showStatus("");
  appendMessage("human", text);
  watch({ jobId: job.job_id, threadId: job.thread_id, message: text });
  await loadThreads();
  const listed = state.threads.get(job.thread_id);
  if (listed) $("chat-title").textContent = listed.title;
  return true;
}

// Follows a job just queued; `message` is the human message it sent (null
// for a regenerated reply), shown again if the page reloads meanwhile.
export function watch(running) {
  store.setItem(RUNNING, JSON.stringify(running));
  follow(running, appendMessage("assistant", ""), false);
}

// Reads the job's events into `item` until its outcome.
export async function follow(running, item, resumed) {
  stopReading();
  const reading = new AbortController();
  state.reading = reading;
  setBusy(true);
  const paint = progressive(item.querySelector(".bubble"));
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
          paint(text);
        } else if (event.type === "reset") {
          text = ""; // the job started over: what came before is void
          paint(text);
        } else if (event.type === "done") {
          paint(data.response);
          setText(item, data.response);
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

// Cancels the running job; its stream says how it ended.
export async function stop() {
  const running = runningJob();
  if (!running) return;
  const response = await api(`/chat/jobs/${encodeURIComponent(running.jobId)}/cancel`,
    { method: "POST" });
  // 409: it ended first; its stream says how.
  if (!response.ok && response.status !== 409) showStatus(await detailOf(response));
  $("message").focus();
}
