"""The reference's exception example, with every exception really triggered.

Needs a local server started with fault injection and one known key, for example:

    bearlumen serve --port 8787 --allow-faults --api-key sk_test_errors &
    BEARLUMEN_BASE_URL=http://127.0.0.1:8787 BEARLUMEN_API_KEY=sk_test_errors python examples/error_handling.py
"""

from __future__ import annotations

import os
import uuid

import httpx

from bearlumen import (
    AuthenticationError,
    BearLumenError,
    Client,
    DuplicateCustomerError,
    InvalidEmailError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    RateLimitError,
)

base_url = os.environ["BEARLUMEN_BASE_URL"]
client = Client(max_retries=0)  # no retries, so each failure shows at once
external_id = f"user_{uuid.uuid4().hex[:8]}"


def attempt(label: str, call: object) -> None:
    try:
        call()  # type: ignore[operator]
        print(f"{label}: ok")
    except InvalidEmailError:
        print(f"{label}: Invalid email format")
    except DuplicateCustomerError:
        print(f"{label}: Duplicate customer")
    except RateLimitError as e:
        print(f"{label}: Rate limit hit, retry after {e.retry_after} seconds")
    except AuthenticationError:
        print(f"{label}: Invalid API key")
    except NotFoundError:
        print(f"{label}: Not found")
    except InvalidRequestError as e:
        print(f"{label}: Invalid request ({e.param})")
    except NetworkError:
        print(f"{label}: Network error")
    except BearLumenError as e:
        print(f"{label}: Error: {e.message}")


def inject(*faults: str) -> None:
    httpx.post(base_url + "/_admin/faults", json={"script": list(faults)}).raise_for_status()


attempt("create", lambda: client.end_users.create(external_id=external_id, name="AI Startup Inc"))
attempt("create again", lambda: client.end_users.create(external_id=external_id))
attempt("bad email", lambda: client.end_users.create(external_id=external_id + "-2", email="nope"))
attempt("bad limit", lambda: client.end_users.list(limit=5000))
attempt("unknown id", lambda: client.subscriptions.retrieve("sub_does_not_exist"))
attempt("wrong key", lambda: Client(api_key="sk_test_wrong", max_retries=0).end_users.list())
inject("429:2.5")
attempt("rate limited", lambda: client.end_users.list())
inject("503")
attempt("server error", lambda: client.end_users.list())
inject("drop")
attempt("dropped connection", lambda: client.end_users.list())
client.close()
