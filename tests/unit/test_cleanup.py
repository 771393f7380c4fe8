"""Cleanup's settings, schedule and S3 listing, without servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from shared.queue import CLEANUP_TASK, celery_config
from shared.settings import Settings, describe, get_settings
from worker import cleanup
from worker.cleanup import last_modified, list_thread_ids


def settings(**env: object) -> Settings:
    return Settings(_env_file=None, **env)  # type: ignore[call-arg]


@pytest.mark.parametrize("ttl", [0, -1, -86400])
def test_a_ttl_of_zero_or_less_is_refused(ttl: int) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(SESSION_TTL_SECONDS=ttl)
    assert "SESSION_TTL_SECONDS" in describe(caught.value)


@pytest.mark.parametrize("name", ["CLEANUP_INTERVAL_SECONDS", "CLEANUP_RECONCILE_SECONDS"])
def test_cleanup_periods_must_be_positive(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**{name: 0})
    assert name in describe(caught.value)


def test_a_bad_ttl_stops_the_process_at_start_with_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SESSION_TTL_SECONDS", "0")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as stopped:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "SESSION_TTL_SECONDS" in err
    assert err.count("\n") == 1


def test_the_full_scan_runs_daily_by_default() -> None:
    assert settings().CLEANUP_RECONCILE_SECONDS == 86400


def test_beat_enqueues_one_cleanup_per_interval_and_drops_stale_ticks() -> None:
    schedule = celery_config(settings(CLEANUP_INTERVAL_SECONDS=90))["beat_schedule"]
    [entry] = [e for e in schedule.values() if e["task"] == CLEANUP_TASK]
    assert entry["schedule"] == 90.0
    assert entry["options"]["expires"] == 90.0


class FakePaginator:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.calls: list[dict[str, Any]] = []

    async def _pages(self) -> AsyncIterator[dict[str, Any]]:
        for page in self.pages:
            yield page

    def paginate(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(kwargs)
        return self._pages()


class FakeClient:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.paginator = FakePaginator(pages)

    def get_paginator(self, name: str) -> FakePaginator:
        assert name == "list_objects_v2"
        return self.paginator


async def test_thread_ids_come_from_common_prefixes_and_bad_names_are_skipped() -> None:
    client = FakeClient([
        {"CommonPrefixes": [{"Prefix": "p/t1/"}, {"Prefix": "p/bad.name/"}]},
        {"CommonPrefixes": [{"Prefix": "p/t-2_x/"}, {"Prefix": "p/\u00e9/"}]},
        {},
    ])

    pages = [ids async for ids in list_thread_ids(client, "b", "p/")]

    assert pages == [["t1"], ["t-2_x"], []]
    assert client.paginator.calls == [{"Bucket": "b", "Prefix": "p/", "Delimiter": "/"}]


async def test_last_modified_is_the_newest_object_of_all_pages() -> None:
    def at(hour: int) -> dict[str, Any]:
        return {"LastModified": datetime(2025, 1, 1, hour, tzinfo=UTC)}

    client = FakeClient([{"Contents": [at(3), at(9)]}, {"Contents": [at(5)]}])

    newest = await last_modified(client, "b", "p/t1/")

    assert newest == datetime(2025, 1, 1, 9, tzinfo=UTC).timestamp()
    assert await last_modified(FakeClient([{}]), "b", "p/t1/") is None


async def test_concurrent_work_keeps_order_and_its_limit() -> None:
    running = peak = 0

    async def job(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (n % 3))
        running -= 1
        return n

    assert await cleanup._concurrently(job(n) for n in range(50)) == list(range(50))
    assert peak == cleanup.CONCURRENCY
