"""The fake provider's Bedrock Converse API: `POST /model/{modelId}/converse` (JSON) and
`/model/{modelId}/converse-stream` (AWS's binary event-stream framing, which botocore decodes).

Point boto3 at it with dummy credentials:

    boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=fake.base_url,
                 aws_access_key_id="test", aws_secret_access_key="test")

Converse counts like Anthropic: `inputTokens` leaves out `cacheReadInputTokens` and
`cacheWriteInputTokens`. Every answer of the fake carries an `x-amzn-RequestId` header (set by
its app), botocore's `ResponseMetadata.RequestId`.

Anthropic's own API on Bedrock (`/model/{model}/invoke`) is answered by `_anthropic`; its stream
(`invoke-with-response-stream`) is answered 501.
"""

from __future__ import annotations

import binascii
import json
import re
import struct
from typing import TYPE_CHECKING, Any

from ._answer import Reply, error_reply, json_reply, pieces

if TYPE_CHECKING:
    from ._provider import FakeLLMProvider, FakeUsage

CONVERSE = re.compile(r"/model/(?P<model>[^/]+)/converse")
CONVERSE_STREAM = re.compile(r"/model/(?P<model>[^/]+)/converse-stream")
INVOKE_STREAM = re.compile(r"/model/[^/]+/invoke-with-response-stream")
EVENT_STREAM = "application/vnd.amazon.eventstream"


def converse_usage(usage: FakeUsage) -> dict[str, Any]:
    return {
        "inputTokens": usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens,
        "outputTokens": usage.output_tokens,
        "totalTokens": usage.input_tokens + usage.output_tokens,
        "cacheReadInputTokens": usage.cache_read_tokens,
        "cacheWriteInputTokens": usage.cache_write_tokens,
    }


def event_message(event_type: str, payload: dict[str, Any]) -> bytes:
    """One message of AWS's event-stream framing: prelude (total and header lengths) and its
    CRC32, string headers, the JSON payload, the CRC32 of all of it."""
    headers = b""
    for name, value in (
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ):
        encoded = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(encoded))
        headers += encoded
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(headers) + len(body) + 4, len(headers))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


def converse(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Reply:
    answer = {
        "output": {"message": {"role": "assistant", "content": [{"text": fake.text}]}},
        "stopReason": "end_turn",
        "usage": converse_usage(usage),
        "metrics": {"latencyMs": 1},
    }
    return json_reply(answer)


def converse_stream(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Reply:
    events = [event_message("messageStart", {"role": "assistant"})]
    for piece in pieces(fake.text, fake.chunks):
        events.append(
            event_message("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
        )
    events.append(event_message("contentBlockStop", {"contentBlockIndex": 0}))
    events.append(event_message("messageStop", {"stopReason": "end_turn"}))
    events.append(
        event_message("metadata", {"usage": converse_usage(usage), "metrics": {"latencyMs": 1}})
    )
    return 200, EVENT_STREAM, b"".join(events)


def invoke_stream(fake: FakeLLMProvider, body: dict[str, Any], usage: FakeUsage) -> Reply:
    message = "the fake provider does not stream over Bedrock's event-stream framing"
    return error_reply(501, {"message": message})
