"""The Lua scripts of shared/store/jobs.py, each with the names of its KEYS
and ARGV (see _script.py).

Status checks and writes must be one atomic step: a job that was cancelled
or already finished must never be flipped back by a late worker. Times are
Redis's clock (NOW), so every gateway and worker agrees on them. Field names
and statuses come from job.py and conversations.py. Each script names keys
of one hash slot (shared/store/keys.py): a job's and its thread's, or an
owner's.
"""

from __future__ import annotations

from shared.store import conversations as conv
from shared.store._script import NOW
from shared.store.job import (
    ATTEMPT,
    CANCEL_REQUESTED,
    COMMITTING,
    CREATED_AT,
    FAILURES,
    FINISHED_AT,
    FIRST_FAILURE_AT,
    STARTED_AT,
    STATUS,
    TASK_ID,
    JobStatus,
)

_ENDED = (f"status == '{JobStatus.SUCCEEDED}' or status == '{JobStatus.FAILED}'"
          f" or status == '{JobStatus.CANCELLED}'")

# A new thread whose turns all ended without storing anything is no
# conversation: its info goes, and the caller takes it out of its owner's list.
_FORGET_IF_EMPTY = f"""
local function forget_if_empty(inbox, info)
  if redis.call('HGET', info, '{conv.MESSAGES}') == '0' and redis.call('LLEN', inbox) == 0 then
    redis.call('DEL', info)
    return 1
  end
  return 0
end
"""
# The owner's part of a job's end (or withdrawal, or refusal): it leaves its
# client's unfinished jobs; its thread moves up in its owner's list
# (`stored_at`: a turn was stored then), or leaves it (`forgot` 1: the
# thread is no conversation after all).
_OWNER_AFTER_FN = """
local function owner_after(stored_at, forgot)
  redis.call('SREM', client_jobs, job_id)
  if stored_at then
    redis.call('ZADD', owner_threads, 'GT', stored_at, thread_id)
  elseif forgot == 1 then
    redis.call('ZREM', owner_threads, thread_id)
  end
end
"""
OWNER_AFTER_KEYS = ("client_jobs", "owner_threads")
OWNER_AFTER_ARGS = ("job_id", "thread_id", "stored_at", "forgot")
OWNER_AFTER = _OWNER_AFTER_FN + """
if stored_at == '' then stored_at = nil end
owner_after(stored_at, tonumber(forgot))
"""
# Ends a job that is in one of `from_statuses` (",queued,running,"): records
# the outcome (the field/value pairs after the named arguments), appends the
# terminal event, takes it out of its thread's inbox. A `stored` ("1") turn
# marks the thread active and counts its two messages. Returns {the time it
# ended (Redis's clock), 1 if the thread is no conversation after all}, or
# 0 (already ended) or -1 (unknown).
_FINISH_FN = NOW + _FORGET_IF_EMPTY + f"""
local function finish()
  local status = redis.call('HGET', job, '{STATUS}')
  if not status then return -1 end
  if not string.find(from_statuses, ',' .. status .. ',', 1, true) then return 0 end
  redis.call('HSET', job, '{FINISHED_AT}', now, unpack(ARGV, REST))
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', event, 'data', data)
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', events, ttl)
  redis.call('LREM', inbox, 0, job_id)
  local forgot = 0
  if stored == '1' then
    redis.call('ZADD', activity, 'GT', now, thread_id)
    redis.call('HSET', info, '{conv.OWNER}', owner)
    -- The turn stored two messages; the first stored one names the thread.
    if redis.call('HINCRBY', info, '{conv.MESSAGES}', 2) == 2 then
      redis.call('HSET', info, '{conv.TITLE}', title)
    end
  else
    forgot = forget_if_empty(inbox, info)
  end
  return {{now, forgot}}
end
"""
FINISH_KEYS = ("job", "events", "inbox", "activity", "info")
FINISH_ARGS = ("ttl", "event", "data", "maxlen", "from_statuses", "stored", "title", "owner",
                "job_id", "thread_id")
FINISH = _FINISH_FN + "return finish()\n"
# Both parts in one step, where every key is on one Redis.
FINISH_ALL_KEYS = (*FINISH_KEYS, *OWNER_AFTER_KEYS)
FINISH_ALL = _FINISH_FN + _OWNER_AFTER_FN + """
local ended = finish()
if type(ended) == 'table' then
  owner_after(stored == '1' and ended[1] or nil, ended[2])
end
return ended
"""
# Marks the job running and counts the attempt; a finished job is left as it is.
START_KEYS, START_ARGS = ("job", "events"), ("ttl", "maxlen", "task_id")
START = NOW + f"""
local status = redis.call('HGET', job, '{STATUS}')
if not status then return nil end
if {_ENDED} then
  return redis.call('HGETALL', job)
end
redis.call('HSET', job, '{STATUS}', '{JobStatus.RUNNING}', '{STARTED_AT}', now,
           '{TASK_ID}', task_id)
local attempt = redis.call('HINCRBY', job, '{ATTEMPT}', 1)
if attempt > 1 then
  -- What an earlier attempt streamed is void: readers start the reply over.
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'reset',
             'data', '{{"attempt": ' .. attempt .. '}}')
  redis.call('EXPIRE', events, ttl)
end
return redis.call('HGETALL', job)
"""
# The owner's part of accepting a job, first: unless its client's unfinished
# jobs are full, or it starts a thread its owner has no room for
# (`max_threads` "0": no limit), counts it among the client's jobs and puts
# its thread first in its owner's list. Returns what refused, or nil and 1
# if the thread was not in the list.
_RESERVE_FN = """
local function reserve()
  if redis.call('SCARD', client_jobs) >= tonumber(max_for_client) then return 'client' end
  local listed = redis.call('ZSCORE', owner_threads, thread_id)
  if max_threads ~= '0' and not listed
      and redis.call('ZCARD', owner_threads) >= tonumber(max_threads) then return 'threads' end
  redis.call('SADD', client_jobs, job_id)
  redis.call('EXPIRE', client_jobs, ttl)
  redis.call('ZADD', owner_threads, 'GT', now, thread_id)
  if listed then return nil, 0 end
  return nil, 1
end
"""
RESERVE_KEYS = ("client_jobs", "owner_threads")
RESERVE_ARGS = ("ttl", "job_id", "thread_id", "max_for_client", "max_threads")
RESERVE = NOW + _RESERVE_FN + """
local refused, new = reserve()
if refused then return {refused} end
return {'ok', new}
"""
# The thread's part: appends the job (its record: the field/value pairs
# after the named arguments) to the thread's inbox unless it is full
# ({'thread'}); {'ok', the time}. `new_thread` "1": the gateway made the
# thread's id; `indexed`, the bucket's mark of a complete index of threads.
_FULL = "if redis.call('LLEN', inbox) >= tonumber(max_in_thread) then return {'thread'} end\n"
_CREATE_FN = f"""
local function create()
  redis.call('HSET', job, '{CREATED_AT}', now, unpack(ARGV, REST))
  redis.call('EXPIRE', job, ttl)
  redis.call('RPUSH', inbox, job_id)
  redis.call('EXPIRE', inbox, ttl)
  redis.call('SADD', pending, thread_id)
  redis.call('ZADD', activity, 'GT', now, thread_id)
  if redis.call('HSETNX', info, '{conv.OWNER}', owner) == 1 then
    redis.call('HSET', info, '{conv.TITLE}', title)
    if new_thread == '1' or redis.call('EXISTS', indexed) == 1 then
      -- A new id, or the index holds every stored thread: it has no messages yet.
      redis.call('HSET', info, '{conv.MESSAGES}', 0)
    else
      -- Redis lost the index: what S3 holds of this thread is not known here.
      redis.call('HSET', info, '{conv.PARTIAL}', 1)
    end
  end
  return {{'ok', now}}
end
"""
CREATE_KEYS = ("job", "inbox", "pending", "activity", "info", "indexed")
CREATE_ARGS = ("ttl", "job_id", "thread_id", "max_in_thread", "title", "owner", "new_thread")
CREATE = NOW + _CREATE_FN + _FULL + "return create()\n"
# Both parts in one step, where every key is on one Redis.
ACCEPT_KEYS = (*RESERVE_KEYS, *CREATE_KEYS)
ACCEPT_ARGS = (*CREATE_ARGS, "max_for_client", "max_threads")
ACCEPT = NOW + _RESERVE_FN + _CREATE_FN + _FULL + """
local refused = reserve()
if refused then return {refused} end
return create()
"""
# Takes back a job no worker has started, as if never accepted: {1, 1 if
# the thread is no conversation after all}, or {0}. The caller then does
# the owner's part.
WITHDRAW_KEYS = ("job", "events", "inbox", "info")
WITHDRAW_ARGS = ("job_id",)
WITHDRAW = _FORGET_IF_EMPTY + f"""
if redis.call('HGET', job, '{STATUS}') ~= '{JobStatus.QUEUED}' then return {{0}} end
redis.call('DEL', job, events)
redis.call('LREM', inbox, 0, job_id)
return {{1, forget_if_empty(inbox, info)}}
"""
# Back to `queued` while a retry waits; a finished job is left as it is.
REQUEUE = f"""
if redis.call('HGET', job, '{STATUS}') == '{JobStatus.RUNNING}' then
  redis.call('HSET', job, '{STATUS}', '{JobStatus.QUEUED}')
end
"""
# The worker is about to store the turn: from here on it cannot be cancelled.
# 0 if it was cancelled (or ended) first.
COMMIT = f"""
local s = redis.call('HMGET', job, '{STATUS}', '{CANCEL_REQUESTED}')
if s[1] ~= '{JobStatus.RUNNING}' or s[2] then return 0 end
redis.call('HSET', job, '{COMMITTING}', '1')
return 1
"""
# Asks a running job to stop (a message on `channel` to its worker):
# 'cancelling', or 'ended' when it is past the point of no return (finished,
# or storing its turn), or 'unknown'.
ASK_CANCEL_ARGS = ("channel", "job_id")
ASK_CANCEL = NOW + f"""
local s = redis.call('HMGET', job, '{STATUS}', '{COMMITTING}')
if not s[1] then return 'unknown' end
if s[1] ~= '{JobStatus.RUNNING}' and s[1] ~= '{JobStatus.QUEUED}' then return 'ended' end
if s[2] then return 'ended' end
redis.call('HSET', job, '{CANCEL_REQUESTED}', now)
if s[1] == '{JobStatus.RUNNING}' then redis.call('PUBLISH', channel, job_id) end
return 'cancelling'
"""
# One more transient failure (`counts` "1": it used up a retry): {failures
# that used up a retry, seconds since the first failure of any kind}.
FAILURE = NOW + f"""
redis.call('HSETNX', job, '{FIRST_FAILURE_AT}', now)
local n = redis.call('HINCRBY', job, '{FAILURES}', tonumber(counts))
local since = tonumber(now) - tonumber(redis.call('HGET', job, '{FIRST_FAILURE_AT}'))
return {{n, tostring(since)}}
"""
