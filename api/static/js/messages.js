// The messages of the open conversation as list items: who said it, the text
// (a reply as Markdown, one's own message as typed), and its buttons.
//
// Each item keeps its raw text: a copy copies the Markdown as written, and an
// edit starts from the message as it was sent.

import { $, scrollToEnd, state } from "./page.js";
import { renderMarkdown } from "./markdown.js";

const texts = new WeakMap();

export function textOf(item) {
  return texts.get(item) ?? "";
}

export function roleOf(item) {
  return item.classList.contains("human") ? "human" : "assistant";
}

export function setText(item, text) {
  texts.set(item, text);
  const bubble = item.querySelector(".bubble");
  if (roleOf(item) === "assistant") renderMarkdown(bubble, text);
  else bubble.textContent = text;
}

function actionButton(action, label, name) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "action";
  button.dataset.action = action;
  button.textContent = label;
  // The visible word starts the name (voice control users say what they see).
  button.setAttribute("aria-label", name);
  return button;
}

export function messageItem(role, text) {
  const item = document.createElement("li");
  item.className = `message ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "human" ? "You" : "Assistant";
  const bubble = document.createElement("div");
  bubble.className = role === "human" ? "bubble" : "bubble markdown";
  const actions = document.createElement("div");
  actions.className = "actions";
  if (role === "human") {
    actions.append(actionButton("edit", "Edit", "Edit message"));
  } else {
    actions.append(actionButton("copy", "Copy", "Copy reply"),
      actionButton("regenerate", "Regenerate", "Regenerate reply"));
  }
  item.append(who, bubble, actions);
  setText(item, text);
  return item;
}

export function messageItems() {
  return [...$("message-list").children];
}

// Regenerate is offered on the last reply only, and no branch starts while a
// reply is on its way.
export function refreshActions() {
  const items = messageItems();
  const last = items.findLast((item) => roleOf(item) === "assistant");
  for (const item of items) {
    for (const button of item.querySelectorAll("button.action")) {
      const action = button.dataset.action;
      if (action === "regenerate") button.hidden = item !== last;
      if (action !== "copy") button.disabled = state.busy;
    }
  }
}

export function appendMessage(role, text) {
  const item = messageItem(role, text);
  $("message-list").append(item);
  refreshActions();
  scrollToEnd();
  return item;
}

export function note(item, text, failed = false) {
  const line = document.createElement("span");
  line.className = "note";
  line.textContent = text;
  item.querySelector(".actions").before(line);
  item.classList.toggle("failed", failed);
}

// Edit mode: the message becomes a text box. Enter sends the edit, Shift+Enter
// starts a new line, Escape (or Cancel) leaves the message as it was.
export function startEdit(item, onSend) {
  if (item.querySelector(".edit-form")) return;
  const bubble = item.querySelector(".bubble");
  const actions = item.querySelector(".actions");
  const form = document.createElement("form");
  form.className = "edit-form";
  const box = document.createElement("textarea");
  box.rows = 3;
  box.maxLength = 32000;
  box.required = true;
  box.value = textOf(item);
  box.setAttribute("aria-label", "Edit message");
  const send = document.createElement("button");
  send.type = "submit";
  send.textContent = "Send";
  send.setAttribute("aria-label", "Send edited message");
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "secondary";
  cancel.textContent = "Cancel";
  cancel.setAttribute("aria-label", "Cancel editing");
  const buttons = document.createElement("div");
  buttons.className = "edit-actions";
  buttons.append(cancel, send);
  form.append(box, buttons);

  const close = () => {
    form.remove();
    bubble.hidden = false;
    actions.hidden = false;
    item.querySelector('button[data-action="edit"]').focus();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = box.value;
    if (!text.trim() || state.busy) return;
    form.remove();
    bubble.hidden = false;
    actions.hidden = false;
    onSend(text);
  });
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    } else if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  });
  cancel.addEventListener("click", close);
  bubble.hidden = true;
  actions.hidden = true;
  bubble.after(form);
  box.focus();
  box.setSelectionRange(box.value.length, box.value.length);
}
