"""Meter usage from an AWS Lambda handler with `flush_after`.

Lambda freezes the process as soon as the handler returns, so the background worker cannot ship
between invocations. `@client.flush_after()` waits, when the handler returns or raises, until
what it recorded is delivered: at most `timeout` seconds and at most the time the invocation has
left (from the context's `get_remaining_time_in_millis()`, minus half a second). What is not
delivered in time stays in the spool (`/tmp` lives as long as the execution environment) and
goes out during the next invocation.

Deploy `handler` as the function's handler, with BEARLUMEN_API_KEY set. Run this file to invoke
it three times locally with a stand-in context:

    BEARLUMEN_BASE_URL=http://127.0.0.1:8787 BEARLUMEN_API_KEY=sk_test_lambda python examples/lambda_handler.py
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from typing import Any

import bearlumen

# Made once per execution environment (at cold start) and reused by every invocation.
client = bearlumen.Client(
    spool_dir=os.environ.get("BEARLUMEN_SPOOL_DIR")
    or os.path.join(tempfile.gettempdir(), "bearlumen")
)


@client.flush_after(timeout=5)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    answer = f"echo: {event['prompt']}"  # your LLM call goes here
    tokens = len(event["prompt"].split()) + len(answer.split())
    client.usage.record(
        event_type="token_usage",
        metric_name="llm_tokens",
        quantity=tokens,
        end_user_id=event["user"],
        agent_id="lambda-chat",
        metadata={"model": "echo-1", "provider_cost_usd": tokens * 1e-6},
    )
    return {"statusCode": 200, "body": answer}


class LocalContext:
    """Stands in for Lambda's context object when this file runs on a laptop."""

    def get_remaining_time_in_millis(self) -> int:
        return 3000


if __name__ == "__main__":
    started = datetime.now(timezone.utc)
    for prompt in ("hello", "how much did that cost", "bye"):
        handler({"user": "eu_1", "prompt": prompt}, LocalContext())
        # No flush() here: each invocation returned only once its event was delivered.
        print(f"after {prompt!r}: {client.stats()['recorded']} recorded")
    print("total on the server:", client.usage.summary(start_date=started)["totalEvents"])
