"""A minimal HTTP/1.1 sink on loopback for comparing SDKs: answers every POST with 200 and a
result per event.

It counts requests, body bytes and events, and does no parsing beyond the headers and a count of
the event name in each body (inflated first when gzip), so it is never the bottleneck and treats
every SDK alike. `--latency-ms N` answers each POST N ms after it arrived (each connection waits
on its own, as a distant API would), for SDKs that are a round trip away from their API.
`GET /stats` reports the counts. Run as its own process: `python benchmarks/_sink.py
[--latency-ms 50]` prints `listening on http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import zlib

# Every SDK in peers.py sends the event name once per event, as a JSON string.
EVENT_MARKER = b'"token_usage"'
counts = {"requests": 0, "bytes": 0, "events": 0}
replies: dict[int, bytes] = {}


def reply(events: int) -> bytes:
    """What the API answers to a batch it recorded whole, in its own compact form: a result per
    event (bearlumen counts an event its answer does not confirm as failed, not delivered)."""
    if events not in replies:
        results = b",".join(
            b'{"index":%d,"status":"recorded","id":"evt_%012d"}' % (i, i) for i in range(events)
        )
        replies[events] = b'{"recorded_count":%d,"skipped_count":0,"rejected_count":0,' % events
        replies[events] += b'"results":[' + results + b"]}"
    return replies[events]


async def handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            gzipped = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"content-encoding":
                    gzipped = value.strip().lower() == b"gzip"
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET /stats"):
                payload = json.dumps(counts).encode()
            else:
                counts["requests"] += 1
                counts["bytes"] += len(body)
                if gzipped:
                    body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
                events = body.count(EVENT_MARKER)
                counts["events"] += events
                payload = reply(events)
                if latency:
                    await asyncio.sleep(latency)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(latency: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, latency), "127.0.0.1", 0, limit=64 * 1024 * 1024
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=0.0)
    try:
        asyncio.run(main(parser.parse_args().latency_ms / 1000))
    except KeyboardInterrupt:
        sys.exit(0)
