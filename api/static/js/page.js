// What every part of the page shares: its elements, its state, its status line.

export const $ = (id) => document.getElementById(id);
export const store = window.sessionStorage;

// sessionStorage keys: they last as long as the tab.
export const KEY = "chat.apiKey";
export const OPEN = "chat.thread";
export const RUNNING = "chat.running";
export const LANGUAGE = "chat.language";

export const state = {
  threadId: null, // the open conversation; null before its first message
  threads: new Map(), // thread id -> its entry in GET /chat/threads
  threadsBefore: null, // cursor of the next page of conversations
  olderBefore: null, // cursor of the open conversation's older messages
  loadingOlder: false,
  reading: null, // AbortController of the stream being read
  busy: false, // a reply is on its way: no second one, no branch
};

// `kind` "info" for confirmations; errors otherwise.
export function showStatus(text, kind = "error") {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("info", kind === "info");
}

export function report(error) {
  showStatus(`Something went wrong: ${error.message}`);
}

export function scrollToEnd() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}
