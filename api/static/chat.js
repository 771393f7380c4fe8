// The chat page's entry point: wires the controls to the modules in js/ and
// opens the conversation the tab had open (or the reply it was following).
//
// Plain ES modules served as they are: no build step, and no script but
// files from this origin, as the Content-Security-Policy demands.

import { askKey, withKey } from "./js/api.js";
import { editMessage, regenerate } from "./js/branches.js";
import { loadOlder, newChat, openThread } from "./js/conversation.js";
import { startEdit, textOf } from "./js/messages.js";
import { $, KEY, LANGUAGE, OPEN, report, showStatus, state, store } from "./js/page.js";
import { runningJob, send, stop } from "./js/reply.js";
import { closeNarrowPanel, loadThreads } from "./js/threads.js";

const COPIED_MS = 2000;

async function copyReply(item, button) {
  try {
    await navigator.clipboard.writeText(textOf(item));
  } catch {
    showStatus("Could not copy: the browser did not allow it.");
    return;
  }
  button.textContent = "Copied";
  showStatus("Reply copied.", "info");
  setTimeout(() => {
    button.textContent = "Copy";
  }, COPIED_MS);
}

// One listener for every message's buttons, those of messages still to come too.
function onMessageAction(event) {
  const button = event.target.closest("button.action");
  if (!button) return;
  const item = button.closest(".message");
  const action = button.dataset.action;
  if (action === "copy") copyReply(item, button).catch(report);
  else if (state.busy) showStatus("Wait for the reply, or stop it, first.");
  else if (action === "edit") {
    startEdit(item, (text) => withKey(() => editMessage(item, text)).catch(report));
  } else if (action === "regenerate") withKey(() => regenerate(item)).catch(report);
}

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
  $("message-list").addEventListener("click", onMessageAction);
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
  const running = runningJob();
  const open = running ? running.threadId : store.getItem(OPEN);
  await withKey(() => loadThreads());
  // A message sent while the list loaded has opened its own conversation.
  if (state.threadId !== null) return;
  if (open) await withKey(() => openThread(open));
  else newChat();
}

start().catch(report);
