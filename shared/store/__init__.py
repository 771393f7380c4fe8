"""All of the state the gateway and the workers keep in Redis, one module per aggregate.

Each module owns its keys (named in `keys`), its hash fields and its Lua
scripts; nothing outside this package builds those keys or runs commands on
them. Every time stored here is Redis's clock (TIME), so gateways and
workers agree on it whatever their own clocks say.

- `jobs`: a job's record hash and its events stream (Job, JobStore), and
  the accept/end scripts that also move the thread's inbox, the client's
  unfinished jobs, the activity index and the owner's list in the same step.
- `inbox`: a thread's inbox, its lease, hold and missed/kicked marks, and
  the pending set: who runs a thread's next turn (Inbox).
- `conversations`: each owner's list of conversations (Conversations).
"""
