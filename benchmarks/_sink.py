"""A minimal HTTP/1.1 sink on loopback for comparing SDKs: answers every POST with 200 at once.

It counts requests and body bytes and does no parsing beyond the headers, so it is never the
bottleneck and treats every SDK alike. `GET /stats` reports the counts. Run as its own process:
`python benchmarks/_sink.py` prints `listening on http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import asyncio
import json
import sys

REPLY = b'{"status":1,"recorded_count":0,"skipped_count":0,"rejected_count":0,"results":[]}'
counts = {"requests": 0, "bytes": 0}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET /stats"):
                payload = json.dumps(counts).encode()
            else:
                counts["requests"] += 1
                counts["bytes"] += len(body)
                payload = REPLY
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


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=64 * 1024 * 1024)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
