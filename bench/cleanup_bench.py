"""Time of one cleanup pass: 10,000 stored threads, of which 100 expired.

Starts redis-server and moto's S3 server on loopback, seeds one small object
per thread straight into S3 and the activity index straight into Redis, then
times the pass (and, for comparison, the full reconciling scan of S3, with
the index intact and after Redis lost `--lost` of its entries: each costs one
LIST of its thread). Run: `python -m bench.cleanup_bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import boto3
from botocore.config import Config
from redis.asyncio import Redis

from shared.checkpoint import AsyncS3Saver
from shared.ids import new_id
from shared.logging import configure_logging
from shared.settings import Settings
from shared.store.keys import RECONCILED_KEY, activity_keys
from tests import servers
from worker.cleanup import Cleanup

# The bench runs on one Redis, which has one activity index.
ACTIVITY = activity_keys()[0]

T = TypeVar("T")

PREFIX = "chat_histories/"
TTL = 3600
SEEDERS = 16


def seed_s3(endpoint: str, bucket: str, threads: list[str]) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      config=Config(max_pool_connections=SEEDERS))

    def put(thread_id: str) -> None:
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}{thread_id}/ns.AA/head", Body=b"x")

    with ThreadPoolExecutor(SEEDERS) as pool:
        list(pool.map(put, threads))


async def seed_index(redis: Redis, threads: list[str], expired: int) -> None:
    now = time.time()
    await redis.delete(ACTIVITY)
    await redis.zadd(ACTIVITY, {t: now - TTL - 600 for t in threads[:expired]})
    for start in range(expired, len(threads), 5000):
        await redis.zadd(ACTIVITY, dict.fromkeys(threads[start:start + 5000], now))
    await redis.set(RECONCILED_KEY, "1")


async def timed(work: Awaitable[T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = await work
    return result, (time.perf_counter() - started) * 1000


async def measure(redis_url: str, endpoint: str, bucket: str, threads: list[str],
                  expired: int, lost: int) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    settings = Settings(_env_file=None, S3_BUCKET_NAME=bucket,  # type: ignore[call-arg]
                        S3_PREFIX=PREFIX, SESSION_TTL_SECONDS=TTL)
    async with AsyncS3Saver.from_conn_string(f"s3://{bucket}/{PREFIX}", endpoint_url=endpoint,
                                             region_name="us-east-1") as saver:
        cleanup = Cleanup(settings, redis, saver)
        await seed_index(redis, threads, expired)
        deleted, pass_ms = await timed(cleanup.run())
        again, idle_ms = await timed(cleanup.run())
        intact, scan_ms = await timed(cleanup.reconcile())
        await redis.zrem(ACTIVITY, *threads[-lost:])
        rebuilt, rebuild_ms = await timed(cleanup.reconcile())
    await redis.aclose()
    print(f"{len(threads):,} threads in S3 and the index, {expired} expired (moto, loopback)")
    print(f"  cleanup pass: {pass_ms:.0f} ms, deleted {deleted}")
    print(f"  next pass, nothing expired: {idle_ms:.1f} ms, deleted {again}")
    print(f"  full S3 scan, index intact: {scan_ms:.0f} ms, reindexed {intact}")
    print(f"  full S3 scan after Redis lost {lost:,} entries: {rebuild_ms:.0f} ms, "
          f"reindexed {rebuilt} ({rebuild_ms / max(rebuilt, 1):.1f} ms per lost thread)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--expired", type=int, default=100)
    parser.add_argument("--lost", type=int, default=1000)
    args = parser.parse_args()
    # One line per deleted thread would bury the figures.
    configure_logging(Settings(_env_file=None, LOG_LEVEL="WARNING"))  # type: ignore[call-arg]
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc = servers.redis_server(Path(tmp) / "redis").start()
        s3_proc = servers.s3_server(Path(tmp) / "s3").start()
        try:
            endpoint = f"http://127.0.0.1:{s3_proc.port}"
            bucket = servers.create_bucket(endpoint)
            threads = [new_id() for _ in range(args.threads)]
            started = time.perf_counter()
            seed_s3(endpoint, bucket, threads)
            print(f"(seeded S3 in {time.perf_counter() - started:.1f} s)")
            asyncio.run(measure(f"redis://127.0.0.1:{redis_proc.port}/0", endpoint, bucket,
                                threads, args.expired, min(args.lost, args.threads)))
        finally:
            s3_proc.stop()
            redis_proc.stop()


if __name__ == "__main__":
    main()
