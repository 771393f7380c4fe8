"""The key layout: on one Redis, the names keys always had; on a Redis
Cluster, every key one script or transaction names in one hash slot."""

from __future__ import annotations

import uuid

import pytest
from redis.crc import key_slot

from shared.ids import new_id, new_job_id, stored_thread_id
from shared.store import keys


def _slot(key: str) -> int:
    return key_slot(key.encode())


def _thread_keys(thread: str, job: str) -> list[str]:
    return [keys.job_key(job), keys.events_key(job), keys.inbox_key(thread),
            keys.thread_lock_key(thread), keys.hold_key(thread), keys.missed_key(thread),
            keys.kicked_key(thread), keys.agent_thread_key(thread),
            keys.thread_runs_key(thread), keys.thread_info_key(thread),
            keys.activity_key(thread), keys.pending_key(thread),
            keys.threads_indexed_key(thread)]


def test_one_redis_keeps_the_names_keys_always_had() -> None:
    assert keys.inbox_key("t") == "chat:thread:t:inbox"
    assert keys.job_key("j") == "chat:job:j" and keys.events_key("j") == "chat:job:j:events"
    assert keys.pending_keys() == [keys.pending_key("t")] == ["chat:threads:pending"]
    assert keys.activity_keys() == ["chat:threads:activity"]
    assert keys.threads_indexed_keys() == ["chat:threads:indexed"]
    assert keys.owner_threads_key("o") == "chat:owner:o:threads"
    assert keys.client_jobs_key("o", "c") == "chat:client:c:jobs"
    assert keys.llm_pause_key() == "chat:llm:paused_until"


@pytest.mark.usefixtures("cluster_keys")
def test_a_threads_keys_and_its_jobs_share_one_slot() -> None:
    slots = set()
    for _ in range(300):
        thread = stored_thread_id(new_id().replace("-", ""), new_id())
        job = new_job_id(thread)
        assert keys.bucket_of_job(job) == keys.bucket_of_thread(thread)
        assert {_slot(k) for k in _thread_keys(thread, job)} == {_slot(keys.inbox_key(thread))}
        slots.add(_slot(keys.inbox_key(thread)))
    # Spread over (nearly) every bucket, so over every master of a cluster.
    assert len(slots) > keys.BUCKETS * 2 // 3


@pytest.mark.usefixtures("cluster_keys")
def test_an_owners_keys_share_one_slot_and_so_do_the_shared_ones() -> None:
    owner = "0123456789abcdef0123456789abcdef"
    assert len({_slot(keys.owner_threads_key(owner)), _slot(keys.agent_threads_key(owner)),
                _slot(keys.client_jobs_key(owner, "c1")),
                _slot(keys.client_jobs_key(owner, "c2"))}) == 1
    assert len({_slot(keys.owner_threads_key("")), _slot(keys.client_jobs_key("", "c"))}) == 1
    assert len({_slot(keys.llm_pause_key()), _slot(f"{keys.llm_limit_prefix()}:hits"),
                _slot(f"{keys.llm_limit_prefix()}:client:x")}) == 1
    assert len({_slot(keys.assistant_key("a")), _slot(keys.owner_assistants_key(owner))}) == 1
    assert len(keys.pending_keys()) == keys.BUCKETS == len(set(keys.activity_keys()))


def test_a_job_id_names_its_threads_bucket_and_is_a_uuid() -> None:
    for thread in ("t", "another", "0123456789abcdef0123456789abcdef.t"):
        job = new_job_id(thread)
        assert uuid.UUID(job).version == 4 and str(uuid.UUID(job)) == job
        assert keys.bucket_of_job(job) == keys.bucket_of_thread(thread)
    assert keys.bucket_of_job("not-hex-zz") == 0
