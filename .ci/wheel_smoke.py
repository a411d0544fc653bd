"""Use the installed wheel as a user would, from outside the checkout.

Run by `.ci/wheel-smoke` with the Python of a fresh virtual environment that holds the wheel (not
an editable install) and its extras. Any file the wheel lacks fails one of these steps.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

import bearlumen

here = Path(bearlumen.__file__).resolve().parent
assert "site-packages" in here.parts, f"bearlumen imported from {here}, not from the wheel"
print(f"bearlumen {bearlumen.__version__} from {here}")

work = Path(tempfile.mkdtemp(prefix="bearlumen-smoke-"))
bin_dir = Path(sys.executable).parent


def run(*command: str, **kwargs: object) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        sys.exit(f"FAILED: {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    return str(done.stdout)


# 1. The console script serves on loopback; the client records, flushes and queries it.
server_log = (work / "serve.stderr").open("w")
server = subprocess.Popen(
    [str(bin_dir / "bearlumen"), "serve", "--port", "0", "--db", str(work / "db.sqlite3")],
    stdout=subprocess.PIPE,
    stderr=server_log,
    text=True,
)
try:
    assert server.stdout is not None
    first = server.stdout.readline()
    if "listening on " not in first:
        server.wait(10)
        sys.exit(f"FAILED: bearlumen serve\n{first}{(work / 'serve.stderr').read_text()}")
    base_url = first.split("listening on ", 1)[1].split()[0]
    with bearlumen.Client(api_key="sk_smoke", base_url=base_url) as client:
        client.usage.record("token_usage", "llm_tokens", 42, agent_id="smoke-bot",
                            metadata={"provider_cost_usd": 0.25})  # fmt: skip
        flushed = client.flush(timeout=30)
        assert flushed["recorded"] == 1 and flushed["complete"], flushed
        events = client.usage.query(agent_id="smoke-bot")
        assert [e["quantity"] for e in events["events"]] == [42], events
    print(f"serve + record + flush + query: ok ({base_url})")
    sign_in = httpx.get(base_url + "/sign-in")  # the dashboard's templates and static files ship
    assert sign_in.status_code == 200 and 'name="api_key"' in sign_in.text, sign_in.text[:300]
    assert httpx.get(base_url + "/static/dashboard.css").status_code == 200
    print("dashboard's package data: ok")
finally:
    server.terminate()
    server.wait(10)
    server.stdout.close()  # type: ignore[union-attr]

# 2. The pytest plugin's fixture, in a user's own test file, through `pytest -p bearlumen`.
(work / "test_user.py").write_text(
    "import bearlumen\n\n"
    "def test_meters_a_call(bearlumen_server):\n"
    "    client = bearlumen.Client(api_key='sk_test', base_url=bearlumen_server.base_url)\n"
    "    client.usage.record('token_usage', 'llm_tokens', 10)\n"
    "    assert client.flush()['recorded'] == 1\n"
    "    client.close()\n"
)
print(run(sys.executable, "-m", "pytest", "-q", "-p", "bearlumen", "test_user.py", cwd=work)
      .strip().splitlines()[-1])  # fmt: skip

# 3. The types ship: mypy --strict sees them in a user's code (it needs py.typed for that).
(work / "typed_user.py").write_text(
    "import bearlumen\n\n"
    "def total(client: bearlumen.Client) -> float:\n"
    "    return client.usage.summary()['totalCost']\n"
)
print("mypy: " + run(sys.executable, "-m", "mypy", "--strict", "typed_user.py", cwd=work).strip())

# 4. The demo, the README's main job, from the wheel.
out = run(str(bin_dir / "bearlumen"), "demo", "--events", "1000", "--plain", cwd=work)
assert "All 1,000 events delivered exactly once" in out, out
print("demo --events 1000: ok")
print("wheel smoke: all passed")
