"""The command line as a user runs it: `bearlumen serve`, `demo` and `report`; and the pytest
plugin's `bearlumen_server` fixture."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

import bearlumen
from bearlumen._cli import build_parser, main
from bearlumen.testing import OPENAI_ADMIN_KEY, FakeLLMProvider, LocalServer

from .conftest import unused_loopback_url, with_locals


def bearlumen_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bearlumen", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`bearlumen serve` started as a user would, with a key and a database file."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bearlumen", "serve", "--port", "0", "--db", str(tmp_path / "db.sqlite3"),
         "--api-key", "sk_test_cli"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    first = child.stdout.readline()
    assert "listening on http://127.0.0.1:" in first
    assert "export BEARLUMEN_BASE_URL=" in child.stdout.readline() + child.stdout.readline()
    yield first.split("listening on ", 1)[1].split()[0]
    child.terminate()
    child.wait(10)
    child.stdout.close()


def test_serve_answers_the_client_and_refuses_other_keys(served: str) -> None:
    with bearlumen.Client(api_key="sk_test_cli", base_url=served) as client:
        client.usage.record(
            "token_usage", "llm_tokens", 5, agent_id="bot", metadata={"provider_cost_usd": 0.5}
        )
        assert client.flush()["recorded"] == 1
        assert client.cost_attribution.by_agent("2000-01-01", "2100-01-01")["totalCost"] == 0.5
    with bearlumen.Client(api_key="sk_test_other", base_url=served) as stranger:
        with pytest.raises(bearlumen.AuthenticationError):
            stranger.usage.summary()


def reconciliation(stdout: str, provider: str) -> list[list[str]]:
    """The cells of the rows of the demo's plain reconciliation table of `provider`."""
    lines = stdout.split(f"\nMetered vs {provider}'s own reports", 1)[1].splitlines()[3:]
    rows = itertools.takewhile(lambda line: re.match(r"\d{4}-\d\d-\d\d  ", line), lines)
    return [re.split(r"\s{2,}", row.strip()) for row in rows]


@pytest.mark.end_to_end
def test_demo_rides_through_faults_and_ends_with_every_call_reconciled() -> None:
    done = bearlumen_cli(
        "demo", "--events", "300", "--threads", "4", "--plain",
        "--faults", "rate_429=0.2,retry_after=0.05,rate_503=0.1,rate_drop=0.05,seed=3",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All 300 events delivered exactly once" in done.stdout
    for title in ("Cost by agent", "Cost by workflow", "Usage summary", "The shipper"):
        assert title in done.stdout
    assert "metering LLM calls: 300/300 (100%)" in done.stdout  # the plain progress lines
    # The end: each provider's own usage and cost reports (the fake's, of the calls it answered)
    # beside the metered events, every figure equal, in the demo's words and number formats.
    calls = 0
    for provider, models in (
        ("openai", ["gpt-4o", "gpt-4o-mini", "o4-mini"]),
        ("anthropic", ["claude-haiku-4-5", "claude-sonnet-4-6"]),
    ):
        rows = reconciliation(done.stdout, provider)
        assert [row[1] for row in rows] == models
        for _day, model, requests, inputs, outputs, cost, coverage, drift, *_notes in rows:
            theirs, ours = requests.split(" / ")
            assert theirs == (ours if provider == "openai" else "-")  # Anthropic's: no count
            calls += int(ours)
            for pair in (inputs, outputs, cost):
                theirs, ours = pair.split(" / ")
                assert theirs == ours and ours != "0", (model, pair)
            assert re.fullmatch(r"[\d,]+\.\d{4}", cost.split(" / ")[0]), cost  # like 17.8038
            assert (coverage, drift) == ("100.0%", "0.0000"), (model, coverage, drift)
    assert calls == 300
    assert done.stdout.count("Every day x model with spend is metered to at least 99.0%.") == 2


def test_a_call_the_demo_does_not_meter_shows_as_a_shortfall(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import openai

    from bearlumen import _demo

    metered = _demo._sdk_clients

    def openai_unmetered(client: bearlumen.Client, fake_url: str) -> tuple[object, object]:
        _, claude = metered(client, fake_url)
        return openai.OpenAI(api_key="sk-fake", base_url=f"{fake_url}/v1", max_retries=0), claude

    monkeypatch.setattr(_demo, "_sdk_clients", openai_unmetered)
    assert main(["demo", "--events", "40", "--threads", "2", "--plain"]) == 1
    out = capsys.readouterr().out
    rows = reconciliation(out, "openai")
    assert rows and all(row[2].endswith(" / 0") and row[6] == "0.0%" for row in rows), rows
    for row in rows:
        drift = row[5].split(" / ")[0]  # all of the provider's cost is drift
        assert f"{row[0]} {row[1]}: metered 0.0% of what openai reports (below 99.0%)," in out
        assert row[7] == drift and f"${drift} not metered" in out
    assert [row[6] for row in reconciliation(out, "anthropic")] == ["100.0%", "100.0%"]
    assert out.count("Every day x model with spend is metered to at least 99.0%.") == 1


@pytest.mark.end_to_end
def test_demo_against_a_running_server(served: str) -> None:
    done = bearlumen_cli(
        "demo", "--events", "500", "--base-url", served, "--api-key", "sk_test_cli", "--plain"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All 500 events delivered exactly once" in done.stdout


def test_report_prints_tables_or_json(served: str) -> None:
    with bearlumen.Client(api_key="sk_test_cli", base_url=served) as client:
        client.usage.record("t", "m", 1, agent_id="writer", workflow_id="blog", timestamp="2024-01-10T00:00:00Z",
                            metadata={"provider_cost_usd": 2.5})  # fmt: skip
        client.flush()
    common = [
        "report",
        "--start",
        "2024-01-01",
        "--end",
        "2024-02-01",
        "--base-url",
        served,
        "--api-key",
        "sk_test_cli",
    ]
    as_json = bearlumen_cli(*common, "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["byAgent"]["items"][0]["attributionValue"] == "writer"
    assert report["byWorkflow"]["totalCost"] == 2.5 and report["summary"]["totalEvents"] == 1
    as_table = bearlumen_cli(*common, "--plain").stdout
    assert "writer" in as_table and "blog" in as_table and "2.5000" in as_table
    # The demo's words and number formats: no camelCase keys, whole quantities as integers.
    for words in ("agent", "workflow", "cost (USD)", "tokens", "calls", "events", "first event"):
        assert words in as_table
    assert "totalEvents" not in as_table and "Quantity" not in as_table
    assert "1.0000" not in as_table and " 1\n" in as_table


def test_report_without_a_key_names_the_flag_to_pass(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BEARLUMEN_API_KEY", raising=False)
    assert main(["report", "--start", "2024-01-01", "--end", "2024-02-01"]) == 1
    error = capsys.readouterr().err
    assert "pass --api-key or set BEARLUMEN_API_KEY" in error
    assert "Client(api_key" not in error


def test_a_bad_date_names_the_flag_it_came_from(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["report", "--start", "last tuesday", "--end", "2024-02-01", "--api-key", "sk_test_x"]
    assert main([*args, "--base-url", "http://127.0.0.1:9"]) == 1
    error = capsys.readouterr().err.rstrip()
    assert "start_date: must be a date" in error and error.endswith("(check --start)")


def test_version_says_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"bearlumen {bearlumen.__version__}\n"


def test_every_option_has_help_and_shows_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in commands.choices.items():
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        for option in command._actions:
            if option.dest == "help":
                continue
            assert option.help, f"{name} {option.option_strings} has no help"
            if option.default not in (None, False):
                assert str(option.default) in text or "default" in option.help, (name, option.dest)
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    serve_help = " ".join(capsys.readouterr().out.split())
    assert "http://127.0.0.1:8787 by default" in serve_help
    assert "address to listen on (default: 127.0.0.1)" in serve_help
    assert "the server's log level (default: warning)" in serve_help


def test_serve_with_a_bad_fault_spec_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0", "--faults", "bogus"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("bearlumen serve: --faults: ") and "Traceback" not in error


def test_the_pytest_plugin_gives_a_fresh_server(bearlumen_server: LocalServer) -> None:
    client = bearlumen.Client(api_key="sk_test_plugin", base_url=bearlumen_server.base_url)
    client.usage.record("token_usage", "llm_tokens", 10)
    assert client.flush()["recorded"] == 1
    bearlumen_server.set_faults(script=["503"])
    client.usage.record("token_usage", "llm_tokens", 10)
    assert client.close()["recorded"] == 2
    assert bearlumen_server.events_stored() == 2


def test_serve_on_a_busy_port_says_so_in_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = bearlumen_cli("serve", "--port", str(port), timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0] and "--port" in lines[0]
    assert "listening" not in done.stdout


# -- answers of another shape, and the key out of every rendering of the arguments ------------

SECRET = "sk_live_" + "cl1" * 8


@pytest.mark.parametrize(
    ("command", "proxied", "missing"),
    [
        ("report", "bearlumen", "has no 'items'"),
        ("reconcile", "bearlumen", "has no 'events'"),
        ("reconcile", "provider", "not a usage or cost report"),
    ],
)
def test_an_answer_of_another_shape_is_one_line_saying_what_is_missing(
    proxy_url: str,
    server: LocalServer,
    command: str,
    proxied: str,
    missing: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A proxy (or another API) in front answers 200 with other JSON: the command ends with
    # exit 1 and one line naming what the answer lacks and which flag to check; no traceback.
    base_url = proxy_url if proxied == "bearlumen" else server.base_url
    flags = ["--start", "2026-12-01", "--end", "2026-12-02", "--base-url", base_url]
    with contextlib.ExitStack() as stack:
        if command == "reconcile":
            if proxied == "provider":
                provider_url = proxy_url
            else:
                provider_url = stack.enter_context(FakeLLMProvider()).openai_base_url
            flags += ["--provider", "openai", "--provider-base-url", provider_url,
                      "--admin-key", OPENAI_ADMIN_KEY, "--plain"]  # fmt: skip
        assert main([command, "--api-key", SECRET, *flags]) == 1
    said = capsys.readouterr()
    last = said.err.strip().splitlines()[-1]  # after reconcile's progress lines
    assert last.startswith(f"bearlumen {command}: ") and missing in last, said.err
    assert ("--base-url" if proxied == "bearlumen" else "--provider-base-url") in last
    assert "Traceback" not in said.err and SECRET not in said.out + said.err


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_crashed_command_shows_no_api_key_in_its_frames(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `serve --api-key` and `demo --api-key` end in a traceback (here: a failure nobody
    # expected): Python's, rich's or an error tracker's, with locals, shows the parsed
    # arguments in every frame.
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("an unexpected failure")

    if command == "serve":
        monkeypatch.setattr("bearlumen.server.bind_socket", crash)
        flags = ["--port", "0", "--api-key", SECRET, "--api-key", SECRET + "2"]
    else:
        monkeypatch.setattr("bearlumen._demo._simulate", crash)
        flags = ["--base-url", unused_loopback_url(), "--api-key", SECRET, "--plain"]
    monkeypatch.setattr("sys.argv", ["bearlumen", command, *flags])
    del flags  # the test's own frame is in the traceback too
    with pytest.raises(RuntimeError) as caught:
        main()
    shown = with_locals(caught.value)
    assert "ApiKey('[redacted]')" in shown  # the frames' locals were rendered
    assert SECRET not in shown


def test_the_parsed_api_keys_print_as_redacted() -> None:
    for argv in (
        ["serve", "--api-key", SECRET],
        ["demo", "--api-key", SECRET],
        ["report", "--start", "2024-01-01", "--end", "2024-02-01", "--api-key", SECRET],
        ["reconcile", "--provider", "openai", "--start", "2024-01-01", "--api-key", SECRET,
         "--admin-key", SECRET],
    ):  # fmt: skip
        args = build_parser().parse_args(argv)
        assert SECRET not in repr(args) + str(vars(args)), argv[0]


def test_the_first_key_missing_is_named_by_its_path_in_the_answer() -> None:
    from bearlumen import BearLumenError, CostBreakdownResponse
    from bearlumen._cli import checked_answer

    whole = {"items": [], "totalCost": 0, "startDate": "", "endDate": "", "groupBy": "agent"}
    assert checked_answer(whole, CostBreakdownResponse, "by_agent") is whole
    item = {"attributionValue": None, "totalCost": 0, "totalQuantity": 0, "eventCount": 0}
    for answer, said in (
        ([], "the answer to by_agent is no JSON object"),
        ({**whole, "items": "none"}, "has no list at 'items'"),
        ({**whole, "items": [item, {**item, "eventCount": None}, {}]}, "no 'items[2].attributionValue'"),
        ({**whole, "items": [item, 7]}, "is no JSON object at items[1]"),
    ):  # fmt: skip
        with pytest.raises(BearLumenError, match=re.escape(said)):
            checked_answer(answer, CostBreakdownResponse, "by_agent")
