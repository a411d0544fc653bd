"""`mypy --strict` on a user's code sees the keys of every result."""

from __future__ import annotations

import textwrap

import pytest

mypy_api = pytest.importorskip("mypy.api")

USER_CODE = """
import bearlumen
from bearlumen import CostBreakdownResponse, EndUser, Subscription, UsageRecordInput

client: bearlumen.Client = bearlumen.Client(api_key="k")
user: EndUser = client.end_users.create(external_id="u")["endUser"]
name: str = user["externalId"]
sub: Subscription = client.subscriptions.retrieve("sub_1")
result = client.usage.record(event_type="t", metric_name="m", quantity=1)
ok: bool = result["recorded"]
batch: list[UsageRecordInput] = [{"event_type": "t", "metric_name": "m", "quantity": 1}]
counts: int = client.usage.record_batch(batch)["recorded_count"]
costs: CostBreakdownResponse = client.cost_attribution.by_agent("2024-01-01", "2024-02-01")
total: float = costs["totalCost"] + costs["items"][0]["totalCost"]
values: list[str] = client.cost_attribution.list_agents("2024-01-01", "2024-02-01")["values"]


async def main() -> None:
    async with bearlumen.AsyncClient(api_key="k") as aclient:
        created: EndUser = (await aclient.end_users.create(external_id="u"))["endUser"]
        sub: Subscription = await aclient.subscriptions.retrieve("sub_1")
        queued: bool = aclient.usage.record(event_type="t", metric_name="m", quantity=1)["recorded"]
        counts: int = (await aclient.usage.record_batch(batch))["recorded_count"]
        costs: CostBreakdownResponse = await aclient.cost_attribution.by_agent("2024-01-01", "2024-02-01")
        complete: bool = (await aclient.flush(timeout=1.0))["complete"]
        sent: int = aclient.stats()["sent"]


@client.flush_after(timeout=2.0)
def handler(event: dict[str, str], context: object) -> int:
    return 200


status: int = handler({}, None)
"""

MISTAKES = """
import bearlumen
client = bearlumen.Client(api_key="k")
client.end_users.create(external_id="u")["endUser"]["externalID"]
client.usage.record(event_type="t", metric_name="m", quantity=1)["recordd"]
client.usage.record_batch([{"event_type": "t", "metric_name": "m"}])


async def main() -> None:
    aclient = bearlumen.AsyncClient(api_key="k")
    (await aclient.end_users.list())["endUserz"]
    unawaited: int = aclient.usage.summary()["totalEvents"]
    await aclient.end_users.create(externalid="u")
"""


@pytest.fixture(scope="module")
def mypy_says(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What `mypy --strict` says of each user file, from one run over both: a run spends most
    of its time on bearlumen and its dependencies, the same for both files."""
    folder = tmp_path_factory.mktemp("typing")
    files = {"correct_use": USER_CODE, "mistakes": MISTAKES}
    for name, code in files.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(code))
    out, err, _status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(folder / ".mypy")]
        + [str(folder / f"{name}.py") for name in files]
    )
    assert not err, err
    return {
        name: "\n".join(line for line in out.splitlines() if f"{name}.py:" in line)
        for name in files
    }


def test_correct_use_type_checks(mypy_says: dict[str, str]) -> None:
    assert mypy_says["correct_use"] == ""


def test_wrong_keys_and_missing_fields_are_caught(mypy_says: dict[str, str]) -> None:
    out = mypy_says["mistakes"]
    assert '"externalID"' in out and '"recordd"' in out
    assert "quantity" in out  # the batch event lacks a required key
    assert '"endUserz"' in out  # a wrong key of an awaited result
    assert "Coroutine" in out  # a result used without await
    assert '"externalid"' in out  # a misspelt argument of an async call
