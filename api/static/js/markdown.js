// Replies as Markdown: marked turns the text into HTML, DOMPurify keeps only
// what is safe of it (no script, no event handler, no javascript: URL), and
// the result goes into the page as DOM nodes, never as an HTML string.
//
// HTML written in a reply shows as text: a chat reply has no use for it, and
// Chrome reports every inline handler it parses (even in DOMPurify's inert
// document) as a CSP violation. DOMPurify still checks what marked makes.
//
// Both are vendored ES modules (api/static/vendor/, see the README): the page
// has no build step and loads nothing from another origin.

import { Marked } from "../vendor/marked/marked.esm.js";
import DOMPurify from "../vendor/dompurify/purify.es.mjs";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]);

const parser = new Marked({
  gfm: true,
  breaks: true,
  async: false,
  renderer: { html: (token) => escapeHtml(token.text) },
});

const PURIFY = {
  USE_PROFILES: { html: true },
  // The CSP allows images from this origin only and no inline style: a reply
  // could only make the console complain, or leak a read receipt elsewhere.
  FORBID_TAGS: ["img", "picture", "video", "audio", "source", "style", "form", "input",
    "button", "textarea", "select", "iframe"],
  FORBID_ATTR: ["style", "id", "name"],
  // Web and mail links, and links within the page; nothing else (no javascript:, no data:).
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  RETURN_DOM_FRAGMENT: true,
};

// Links leave the page in a new tab that cannot reach back to it.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    if (!node.hasAttribute("href")) return;
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

export function renderMarkdown(element, text) {
  element.replaceChildren(DOMPurify.sanitize(parser.parse(text), PURIFY));
}

// While tokens stream in, the whole reply is parsed again at most once a
// frame: an open code block or list renders as it grows, without redrawing
// at every token.
export function progressive(element) {
  let text = "";
  let queued = false;
  return (next) => {
    text = next;
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      renderMarkdown(element, text);
    });
  };
}
