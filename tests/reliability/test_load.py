"""Load and a Redis crash under load: gunicorn (2 workers), both middlewares, a real Redis.

The load comes from a second process (:mod:`tests.reliability.loadgen`) over
loopback. Every client has its own session and a counter in it that each of
its ``/count`` requests increments; the client's requests are sequential, so
the counts it is answered must be exactly 1, 2, 3, ... whichever worker
answers: any lost or stale session write breaks the sequence. Throughput and
latency are printed (``pytest -s``) and recorded as test properties; they
are measurements, never asserted.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import servers
from tests.gunicorn import Gunicorn
from tests.reliability.conftest import ROOT

LOAD_DEADLINE = 90.0


def run_load(url: str, *args: str) -> tuple[list[dict[str, Any]], dict[int, str | None]]:
    """Run the load generator to completion; return its request records and final cookies."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.loadgen", url, *args],
        cwd=ROOT,
        capture_output=True,
        timeout=LOAD_DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return parse_load(done.stdout)


def parse_load(output: bytes) -> tuple[list[dict[str, Any]], dict[int, str | None]]:
    records: list[dict[str, Any]] = []
    cookies: dict[int, str | None] = {}
    for line in output.decode().splitlines():
        item = json.loads(line)
        if "final_cookie" in item:
            cookies[item["client"]] = item["final_cookie"]
        else:
            records.append(item)
    return records, cookies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(records: list[dict[str, Any]]) -> dict[str, float]:
    latencies = [r["end"] - r["start"] for r in records]
    elapsed = max(r["end"] for r in records) - min(r["start"] for r in records)
    return {
        "requests": len(records),
        "throughput_rps": round(len(records) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "errors": sum(1 for r in records if r["status"] != 200),
    }


def counts_by_client(records: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    by_client: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r["start"]):
        if record["kind"] == "count":
            by_client[record["client"]].append(record)
    return by_client


def test_load_loses_no_session_increment(
    gunicorn_on_own_redis: Gunicorn, record_property: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    clients, per_client = 16, 150
    records, cookies = run_load(
        gunicorn_on_own_redis.url,
        "--clients",
        str(clients),
        "--requests",
        str(per_client),
        "--page-every",
        "3",
    )
    stats = summary(records)
    for name, value in stats.items():
        record_property(name, value)
    with capsys.disabled():
        print(f"\nload: 2 gunicorn workers, Redis, {clients} clients: {stats}")

    assert len(records) == clients * per_client
    assert stats["errors"] == 0, [r for r in records if r["status"] != 200][:5]
    for client, sequence in counts_by_client(records).items():
        assert [int(r["body"]) for r in sequence] == list(range(1, len(sequence) + 1)), client
    # The sessions are in Redis, not in a worker: a fresh request sees the last count.
    for client, sequence in counts_by_client(records).items():
        reply = requests.get(
            gunicorn_on_own_redis.url + "/count", cookies={"session": cookies[client] or ""}, timeout=10
        )
        assert reply.text == str(len(sequence) + 1)
    assert "Traceback" not in gunicorn_on_own_redis.log()


def test_redis_crash_under_load_drops_no_acknowledged_write(
    gunicorn_on_own_redis: Gunicorn,
    own_redis: servers.ServerProcess,
    record_property: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Redis is killed (SIGKILL) 1.5 s into a paced 6 s run and restarted 1 s later.

    Pages keep answering 200 (cache misses); session writes during the outage
    answer 503 with Retry-After; every increment acknowledged with a 200 is
    still there afterwards; from 2 s after the restart everything answers 200,
    with the same gunicorn processes.
    """
    served = gunicorn_on_own_redis
    # To a file, not a pipe: a pipe nobody reads until the end would stall the load when full.
    out_path = tmp_path / "load.jsonl"
    out = open(out_path, "wb")  # noqa: SIM115  (closed in the finally below)
    load = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability.loadgen",
            served.url,
            *("--clients", "8", "--requests", "300", "--interval", "0.02", "--page-every", "3"),
        ],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.5)  # the load is paced in wall time: these sleeps place the fault inside it
        killed_at = time.time()
        os.kill(own_redis.pid, signal.SIGKILL)
        assert own_redis.process is not None
        own_redis.process.wait(5)
        time.sleep(1.0)
        own_redis.start()  # same port, same data directory: the append-only file is replayed
        restarted_at = time.time()
        _, errors = load.communicate(timeout=LOAD_DEADLINE)
    finally:
        if load.poll() is None:
            load.kill()
            load.communicate()
        out.close()
    assert load.returncode == 0, errors.decode()
    records, cookies = parse_load(out_path.read_bytes())
    stats = summary(records)
    stats["unavailable_503"] = sum(1 for r in records if r["status"] == 503)
    stats["recovered_after_s"] = round(
        min(
            r["end"]
            for r in records
            if r["kind"] == "count" and r["status"] == 200 and r["start"] > restarted_at
        )
        - restarted_at,
        3,
    )
    for name, value in stats.items():
        record_property(name, value)
    with capsys.disabled():
        print(f"\nRedis killed for 1 s under load: {stats}")

    assert max(r["start"] for r in records) > restarted_at + 2.5, "the load ended too early to judge recovery"
    unexpected = [r for r in records if r["status"] not in (200, 503)]
    assert unexpected == []
    unavailable = [r for r in records if r["status"] == 503]
    assert unavailable, "the outage was never seen"
    assert all(r["kind"] == "count" and r["retry_after"] for r in unavailable)
    during = [r for r in records if killed_at + 0.1 < r["start"] < restarted_at - 0.1]
    assert any(r["kind"] == "page" and r["status"] == 200 for r in during)  # pages served through it
    late = [r for r in records if r["start"] > restarted_at + 2.0]
    assert late
    assert [r for r in late if r["status"] != 200] == []

    for client, sequence in counts_by_client(records).items():
        acknowledged = 0
        failed_since = 0
        for record in sequence:
            if record["status"] == 503:
                failed_since += 1
                continue
            count = int(record["body"])
            # One more than the last acknowledged count, plus at most the writes whose 503
            # was sent after the store had already applied them (a reply lost, not a write).
            assert acknowledged < count <= acknowledged + 1 + failed_since, (client, record)
            acknowledged, failed_since = count, 0
        reply = requests.get(served.url + "/count", cookies={"session": cookies[client] or ""}, timeout=10)
        assert acknowledged < int(reply.text) <= acknowledged + 1 + failed_since

    errors_seen = 0
    for _ in range(20):
        stats = requests.get(served.url + "/stats.json", timeout=10).json()
        errors_seen = max(errors_seen, stats["pages"]["errors"])
    assert errors_seen > 0  # the outage was counted, not hidden
    assert served.process.poll() is None
    assert "Traceback" not in served.log()
