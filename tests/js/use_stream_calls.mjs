// The calls the LangGraph JS SDK's useStream hook makes for a chat, against
// the API at argv[2] with assistant argv[3]; prints what came back as JSON.
// Run by tests/e2e/test_js_sdk.py with @langchain/langgraph-sdk installed
// beside this file.
import { Client } from "@langchain/langgraph-sdk";

const [apiUrl, assistantId] = process.argv.slice(2);
const client = new Client({ apiUrl });
const out = {};

const info = await fetch(`${apiUrl}/info`);
out.info = info.status;

const thread = await client.threads.create({ metadata: {} });
out.threadId = thread.thread_id;

async function send(text, checkpoint) {
  const events = [];
  for await (const part of client.runs.stream(thread.thread_id, assistantId, {
    input: { messages: [{ type: "human", content: [{ type: "text", text }] }] },
    streamMode: ["values", "updates", "messages-tuple", "custom"],
    streamSubgraphs: true,
    streamResumable: true,
    onDisconnect: "continue",
    ...(checkpoint ? { checkpoint } : {}),
  })) {
    events.push({ event: part.event, data: part.data, id: part.id ?? null });
  }
  return events;
}

out.first = await send("hello there");
const history = await client.threads.getHistory(thread.thread_id, { limit: 10 });
out.historyLength = history.length;
const { thread_id: _, ...head } = history[0].checkpoint;
out.second = await send("and again", head);

out.found = (
  await client.threads.search({ metadata: { graph_id: assistantId }, limit: 100 })
).map((t) => t.thread_id);
const runs = await client.runs.list(thread.thread_id);
out.runs = runs.map((r) => r.status);
const rejoined = [];
for await (const part of client.runs.joinStream(thread.thread_id, runs[0].run_id, {
  lastEventId: "-1",
})) {
  rejoined.push(part.event);
}
out.rejoined = rejoined;
out.state = (await client.threads.getState(thread.thread_id)).values;

console.log(JSON.stringify(out));
