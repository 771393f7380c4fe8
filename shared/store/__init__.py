"""All of the state the gateway and the workers keep in Redis, one module per aggregate.

Each module owns its keys (named in `keys`), its hash fields and its Lua
scripts; nothing outside this package builds those keys or runs commands on
them. Every time stored here is Redis's clock (TIME), so gateways and
workers agree on it whatever their own clocks say. A thread is named by its
stored id (`shared.ids.stored_thread_id`), which says whose it is.

- `job`: a job's record (Job, JobStatus, the fields its scripts name).
- `jobs`: the job records and their events streams (JobStore); its scripts
  (`_job_scripts`) accept and end a job and, in the same step, move the
  thread's inbox, the client's unfinished jobs, the activity index and the
  owner's list of conversations (on a Redis Cluster, the owner's part in a
  step of its own).
- `inbox`: a thread's inbox, its lease, hold and missed/kicked marks, and
  the pending set: who runs a thread's next turn (Inbox).
- `conversations`: each owner's list of conversations, the activity index
  cleanup reads, and the marks of a complete list (Conversations).
- `agent_threads`: the LangGraph Server API's thread records (metadata,
  owner, times), each owner's index of them, and each thread's runs.
- `limits`: the moving windows of the per-client request limit and of the
  global LLM limit (its fair shares, and the pause a provider's 429 asks for).
- `assistants`: the assistants a key makes through the LangGraph Server
  API, every version of each, and each owner's index of them.
- `idempotency`: the job an Idempotency-Key claimed.
- `keys`: every key's name; only this package builds keys. On a Redis
  Cluster keys carry hash tags, so that every script and transaction here
  names keys of one slot: a thread's and its jobs', or an owner's.
"""
