"""AsyncClient against the sync Client from a thread pool: requests/s, and event-loop lag.

Starts `bearlumen serve` (SQLite in a temporary folder) as its own process, twice: as it is on
loopback, and with 20 ms of injected latency on every request (about a cloud region's round
trip). For each, N `usage.summary()` calls:

* AsyncClient: all N under one `asyncio.gather` (the pool holds 20 connections);
* Client: the same N calls from a `ThreadPoolExecutor` of 20 threads;
* a bare `httpx.AsyncClient` doing the same GETs: the floor under AsyncClient.

Besides requests/s it prints the client process's CPU time per request, which a busy machine
disturbs less than wall time.

Then the event loop's lag while it works: a ticker asks for a 1 ms sleep and records how late it
wakes, while (a) AsyncClient makes N calls and 10,000 `record()`s and awaits `flush()`, and (b)
the same N calls go through the sync Client straight from the loop (what the old FastAPI example
did). Prints requests/s and lag p50 / p99 / max.

    python benchmarks/async_client.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import secrets
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable, Tuple

import httpx
from _spawn import bearlumen_serve, spawn

import bearlumen
from bearlumen._http import NO_DELAY, connection_limits

THREADS = 20


Timing = Tuple[float, float]  # wall seconds, this process's CPU seconds


def rate(calls: int, timing: Timing) -> str:
    wall, cpu = timing
    return f"{calls / wall:8,.0f} req/s  client CPU {cpu / calls * 1e6:6,.0f} µs/req"


def sync_from_threads(url: str, key: str, calls: int) -> Timing:
    with bearlumen.Client(api_key=key, base_url=url) as client:
        client.usage.summary()  # open a connection before the clock starts
        began, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda _: client.usage.summary(), range(calls)))
        return time.perf_counter() - began, time.process_time() - cpu


async def async_gather(url: str, key: str, calls: int) -> Timing:
    async with bearlumen.AsyncClient(api_key=key, base_url=url) as client:
        await client.usage.summary()
        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client.usage.summary() for _ in range(calls)))
        return time.perf_counter() - began, time.process_time() - cpu


async def raw_httpx_gather(url: str, key: str, calls: int) -> Timing:
    """The floor: the same GETs through a bare httpx.AsyncClient with the SDK's pool limits."""
    transport = httpx.AsyncHTTPTransport(limits=connection_limits(), socket_options=NO_DELAY)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, transport=transport) as http:
        await http.get("/v1/usage/summary")
        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(http.get("/v1/usage/summary") for _ in range(calls)))
        return time.perf_counter() - began, time.process_time() - cpu


class LagMeter:
    """Asks for 1 ms sleeps and records how much later than that each one wakes."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._running = True

    async def run(self) -> None:
        while self._running:
            asked = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lags.append(time.perf_counter() - asked - 0.001)

    def stop(self) -> str:
        self._running = False
        lags = sorted(self.lags) or [0.0]

        def ms(q: float) -> float:
            return lags[min(len(lags) - 1, int(q * len(lags)))] * 1000

        return f"lag p50 {ms(0.5):7.2f} ms  p99 {ms(0.99):7.2f} ms  max {lags[-1] * 1000:8.2f} ms"


async def lag_while(work: Callable[[], Awaitable[None]]) -> str:
    meter = LagMeter()
    ticker = asyncio.create_task(meter.run())
    await asyncio.sleep(0.01)
    await work()
    lag = meter.stop()
    await ticker
    return lag


async def loop_lag(url: str, key: str, calls: int) -> list[str]:
    lines = []
    async with bearlumen.AsyncClient(api_key=key, base_url=url) as client:

        async def async_work() -> None:
            for n in range(10_000):
                client.usage.record("token_usage", "llm_tokens", n)
            await asyncio.gather(*(client.usage.summary() for _ in range(calls)))
            await client.flush()

        lag = await lag_while(async_work)
        lines.append(f"AsyncClient: {calls} awaited calls + 10k record() + flush: {lag}")

    with bearlumen.Client(api_key=key, base_url=url) as blocking:

        async def blocking_work() -> None:
            for _ in range(calls):
                blocking.usage.summary()  # blocks the loop for the whole round trip
                await asyncio.sleep(0)

        lag = await lag_while(blocking_work)
        lines.append(f"Client in the loop: {calls} blocking calls          : {lag}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    sniffio = importlib.util.find_spec("sniffio") is not None
    print(
        f"# CPython {platform.python_version()}, {os.cpu_count()} cores, {platform.machine()},"
        f" httpx {httpx.__version__}, sniffio {'installed' if sniffio else 'absent'}"
    )
    for label, faults in [
        ("loopback", []),
        ("20 ms latency", ["--faults", "rate_latency=1,latency_ms=20"]),
    ]:
        with tempfile.TemporaryDirectory() as folder:
            db = os.path.join(folder, "bench.sqlite3")
            with spawn(bearlumen_serve("--db", db, *faults)) as url:
                key = "sk_bench_" + secrets.token_hex(4)
                calls = args.calls if not faults else args.calls // 2
                sync_s = sync_from_threads(url, key, calls)
                async_s = asyncio.run(async_gather(url, key, calls))
                raw_s = asyncio.run(raw_httpx_gather(url, key, calls))
                print(f"## {label}, {calls} usage.summary() calls")
                print(f"Client, {THREADS} threads      : {rate(calls, sync_s)}")
                print(f"AsyncClient, gather    : {rate(calls, async_s)}")
                print(f"bare httpx.AsyncClient : {rate(calls, raw_s)}")
                lag_calls = 200 if not faults else 50
                for line in asyncio.run(loop_lag(url, key, lag_calls)):
                    print(line)


if __name__ == "__main__":
    main()
