// Editing a message and regenerating a reply: a new branch of the conversation,
// made the way the LangGraph API's own clients (useStream) make it.
//
// The thread's checkpoints (POST /threads/{id}/history, newest first) say
// where each message entered. A run from the checkpoint before a message,
// with the edited text as its input, is the edit; a run with no input from
// the checkpoint before a reply is the regenerated reply. The run is a job
// like a chat message, so its reply streams, stops and survives a reload
// through the same /chat/jobs routes. GET /chat/history then shows the branch.

import { detailOf, postJson } from "./api.js";
import { reload } from "./conversation.js";
import { appendMessage, messageItems, roleOf, textOf } from "./messages.js";
import { $, showStatus, state } from "./page.js";
import { watch } from "./reply.js";

// More than the checkpoints a thread keeps (CHECKPOINT_KEEP_LAST).
const CHECKPOINTS = 100;
// The thread keeps its last checkpoints only (and POST /chat one per turn, on a
// thread the client named: none before its first message); older messages stay.
const TOO_OLD = "This message can no longer be changed: no checkpoint from before it is kept.";

export async function editMessage(item, text) {
  const found = await locate(item);
  if (!found) return;
  const { states, messages, index } = found;
  const start = fromBefore(states, messages, index, text);
  if (!start) return showStatus(TOO_OLD);
  await branch(states, start, item, text);
}

export async function regenerate(item) {
  const found = await locate(item);
  if (!found) return;
  const { states, messages, index } = found;
  const asked = messages[index - 1];
  const first = firstHolding(states, messages[index].id);
  const parentId = first?.parent_checkpoint?.checkpoint_id;
  const parent = states.find((s) => s.checkpoint.checkpoint_id === parentId);
  if (parent && asked && messagesOf(parent).at(-1)?.id === asked.id) {
    // The checkpoint holds the question but not the reply: run it again.
    return branch(states, { checkpoint_id: parentId, input: null }, item, null);
  }
  // Only the turn's last checkpoint was kept (POST /chat stores one per turn):
  // ask the same question again from before it.
  const human = item.previousElementSibling;
  if (!asked || asked.type !== "human" || !human) return showStatus(TOO_OLD);
  const start = fromBefore(states, messages, index - 1, textOf(human));
  if (!start) return showStatus(TOO_OLD);
  await branch(states, start, human, textOf(human));
}

function messagesOf(checkpointState) {
  return (checkpointState.values?.messages || []).filter(
    (m) => m.type === "human" || m.type === "ai");
}

// The oldest kept checkpoint that holds the message.
function firstHolding(states, messageId) {
  return states.findLast((s) => messagesOf(s).some((m) => m.id === messageId));
}

// Where a run that sends `text` in place of messages[index] starts.
function fromBefore(states, messages, index, text) {
  const parentId = firstHolding(states, messages[index].id)?.parent_checkpoint?.checkpoint_id;
  if (!parentId) return null;
  return { checkpoint_id: parentId, input: { messages: [{ type: "human", content: text }] } };
}

// The thread's checkpoints, and the message of `item` among the latest one's.
async function locate(item) {
  const threadId = state.threadId;
  const response = await postJson(`/threads/${encodeURIComponent(threadId)}/history`,
    { limit: CHECKPOINTS });
  if (!response.ok) {
    showStatus(`Could not read the conversation's checkpoints: ${await detailOf(response)}`);
    return null;
  }
  const states = await response.json();
  if (threadId !== state.threadId || !states.length) return null;
  // The latest checkpoint holds the newest messages (a window of them), which
  // are the last ones on the page.
  const messages = messagesOf(states[0]);
  const items = messageItems();
  const index = items.indexOf(item) - (items.length - messages.length);
  const message = messages[index];
  const same = message && (message.type === "human") === (roleOf(item) === "human")
    && (typeof message.content !== "string" || message.content === textOf(item));
  if (index < 0 || !same) {
    showStatus("The conversation has changed since it was shown: here it is as it is now.");
    await reload();
    return null;
  }
  return { states, messages, index };
}

async function branch(states, start, from, text) {
  const threadId = state.threadId;
  const body = {
    assistant_id: states[0].metadata?.graph_id || "chat",
    ...start,
    stream_mode: ["messages-tuple"],
    context: { language: $("language").value },
    // A turn sent meanwhile (another tab) would be overtaken: refuse instead.
    multitask_strategy: "reject",
  };
  const response = await postJson(`/threads/${encodeURIComponent(threadId)}/runs`, body);
  if (!response.ok) {
    showStatus(`Could not start it: ${await detailOf(response)}`);
    return;
  }
  const run = await response.json();
  showStatus("");
  // What follows the branch point is not part of the new branch.
  const items = messageItems();
  for (const old of items.slice(items.indexOf(from))) old.remove();
  if (text !== null) appendMessage("human", text);
  watch({ jobId: run.run_id, threadId, message: text });
  $("message").focus();
}
