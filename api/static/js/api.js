// Calls to the gateway, and the API key they carry.
//
// The key lives in sessionStorage (the tab's lifetime). withKey() runs a piece
// of work and, when the server refuses the key, asks for one and runs it again.

import { $, KEY, store } from "./page.js";

export class Unauthorized extends Error {}

export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = store.getItem(KEY);
  if (key) headers.set("Authorization", `Bearer ${key}`);
  if (options.body !== undefined) headers.set("Content-Type", "application/json");
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) throw new Unauthorized();
  return response;
}

export async function postJson(path, body) {
  return api(path, { method: "POST", body: JSON.stringify(body) });
}

export async function detailOf(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

export function askKey(problem = "") {
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

export async function withKey(work) {
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
