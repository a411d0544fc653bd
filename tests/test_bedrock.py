"""`client.llm.instrument(boto3.client("bedrock-runtime"))`: the real boto3 against the fake
provider's Converse API (JSON, and AWS's event-stream framing for `converse_stream`), metering
into the real local server. Needs the `integrations` extra."""

from __future__ import annotations

from typing import Any, Iterator

import genai_prices
import pytest

pytest.importorskip("boto3")

import boto3

import bearlumen
from bearlumen.testing import FakeLLMProvider

from ._llm_fixtures import stored

# All input 1200: 900 uncached, 200 read from and 100 written to the cache. 300 output.
USAGE = {
    "input_tokens": 1200,
    "output_tokens": 300,
    "cache_read_tokens": 200,
    "cache_write_tokens": 100,
}
MESSAGES = [{"role": "user", "content": [{"text": "hi"}]}]
MODELS = ["us.anthropic.claude-sonnet-4-5-20250929-v1:0", "amazon.nova-lite-v1:0"]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider(**USAGE, chunks=4) as provider:
        yield provider


@pytest.fixture
def bedrock(client: bearlumen.Client, fake: FakeLLMProvider) -> Iterator[Any]:
    runtime = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=fake.base_url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    yield client.llm.instrument(runtime)
    runtime.close()


def aws_price(model: str) -> float:
    usage = genai_prices.Usage(
        input_tokens=1200, output_tokens=300, cache_read_tokens=200, cache_write_tokens=100
    )
    return float(genai_prices.calc_price(usage, model_ref=model, provider_id="aws").total_price)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True], ids=["converse", "converse_stream"])
def test_converse_records_one_event_priced_at_aws_rates_keyed_by_the_request_id(
    client: bearlumen.Client, bedrock: Any, model: str, stream: bool
) -> None:
    with client.llm.attribute(end_user_id="eu_1"):
        if stream:
            response = bedrock.converse_stream(modelId=model, messages=MESSAGES)
            events = list(response["stream"])
            text = "".join(
                e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
            )
        else:
            response = bedrock.converse(modelId=model, messages=MESSAGES)
            text = response["output"]["message"]["content"][0]["text"]
    assert text == "Hello from the fake provider."  # the caller got its answer

    (event,) = stored(client)
    assert event["idempotencyKey"] == f"bedrock:{response['ResponseMetadata']['RequestId']}"
    assert event["endUserId"] == "eu_1"
    assert event["quantity"] == 1500
    metadata = event["metadata"]
    assert metadata == {
        **metadata,
        "provider": "bedrock",
        "platform": None,
        "model": model,
        "input_tokens": 1200,  # inputTokens 900 + cache reads 200 + cache writes 100
        "output_tokens": 300,
        "cache_read_tokens": 200,
        "cache_write_tokens": 100,
        "priced": True,
        "stream": stream,
        "partial": False,
    }
    assert metadata["provider_cost_usd"] == pytest.approx(aws_price(model))


def test_a_stream_read_to_its_end_and_then_closed_is_recorded_once_complete(
    client: bearlumen.Client, bedrock: Any
) -> None:
    response = bedrock.converse_stream(modelId=MODELS[0], messages=MESSAGES)
    list(response["stream"])
    response["stream"].close()  # after its usage came: nothing more to record
    (event,) = stored(client)
    assert event["metadata"]["partial"] is False
    assert client.stats()["duplicate"] == 0  # not recorded a second time under the same key


def test_a_stream_closed_before_its_usage_came_records_a_partial_unpriced_event(
    client: bearlumen.Client, bedrock: Any
) -> None:
    response = bedrock.converse_stream(modelId=MODELS[0], messages=MESSAGES)
    events = iter(response["stream"])
    next(events)
    response["stream"].close()
    (event,) = stored(client)
    assert event["metadata"]["partial"] is True
    assert event["metadata"]["priced"] is False  # nothing known: never "$0"
    assert "provider_cost_usd" not in event["metadata"]


def test_botocores_own_errors_pass_through_and_record_nothing(
    client: bearlumen.Client, bedrock: Any
) -> None:
    with pytest.raises(bedrock.exceptions.ClientError):
        bedrock.converse(modelId="x/../../nowhere", messages=MESSAGES)
    assert stored(client) == []
    assert client.llm.capture_errors == 0


def test_a_boto3_client_of_another_service_is_refused(client: bearlumen.Client) -> None:
    s3 = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    with pytest.raises(bearlumen.InvalidRequestError, match="bedrock-runtime"):
        client.llm.instrument(s3)
    s3.close()
