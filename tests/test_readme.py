"""Every Python snippet in README.md and docs/*.md runs as written and prints what the text says.

Each fenced ```python block stands right after a marker that names it and says how it runs:

    <!-- test:NAME -->            a script, run with `python -c`
    <!-- test:NAME pytest -->     a test module, run by pytest (the bearlumen plugin's fixtures)
    <!-- test:NAME after:OTHER -->  OTHER's block runs first, in the same process (a fragment)
    <!-- test:NAME needs:MODULE -->  skipped where MODULE (an optional integration) is not
                                    installed: .ci/integrations runs it with the integrations extra

A script runs in a fresh directory against a real local server and the fake LLM provider,
with the environment the docs tell a reader to set: BEARLUMEN_BASE_URL, BEARLUMEN_API_KEY (a
key of its own), OPENAI_API_KEY / OPENAI_BASE_URL and ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from bearlumen.testing import (
    ANTHROPIC_ADMIN_KEY,
    OPENAI_ADMIN_KEY,
    FakeLLMProvider,
    LocalServer,
)

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

MARKED_BLOCK = re.compile(
    r"<!-- test:(?P<marker>[^>]*?) -->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S
)
ANY_PYTHON_BLOCK = re.compile(r"^```python\n", re.M)

# What the text beside a snippet says it prints, line for line.
PRINTS: Dict[str, List[str]] = {
    "async": ["events stored: 1"],
    "local-server": ["1 recorded"],
    "reconcile-offline": ["gpt-4o: coverage 100%"],
}


@dataclass(frozen=True)
class Snippet:
    doc: str
    name: str
    options: tuple[str, ...]
    code: str


def snippets() -> Iterator[Snippet]:
    for doc in DOCS:
        for match in MARKED_BLOCK.finditer(doc.read_text()):
            name, *options = match["marker"].split()
            if match["lang"] == "python":
                yield Snippet(doc.name, name, tuple(options), match["code"])


SNIPPETS = {snippet.name: snippet for snippet in snippets()}


# A test the docs name as proof: `tests/test_x.py::test_y`, or `::test_y` after its file earlier
# in the same paragraph.
TEST_REFERENCE = re.compile(r"(?:tests/)?(test_\w+\.py)(?:::(test_\w+))?|::(test_\w+)")


def test_every_test_the_docs_name_as_proof_exists() -> None:
    # A promise's proof that was renamed or deleted leaves the promise unproved in silence.
    missing = []
    for doc in [*DOCS, ROOT / "benchmarks" / "RESULTS.md"]:
        module = None  # the file a bare `::test_y` belongs to
        for line in doc.read_text().splitlines():
            if not line.strip():
                module = None
            for found in TEST_REFERENCE.finditer(line):
                named_module, name, bare = found.groups()
                if named_module is not None:
                    module = named_module
                name = name or bare
                path = ROOT / "tests" / (module or "?")
                if not path.is_file():
                    missing.append(f"{doc.name}: {module or '(no file)'}::{name or ''}")
                elif name and f"def {name}(" not in path.read_text():
                    missing.append(f"{doc.name}: {module}::{name}")
    assert missing == []


def test_every_python_snippet_in_the_docs_is_marked_and_named_once() -> None:
    for doc in DOCS:
        text = doc.read_text()
        marked = sum(1 for m in MARKED_BLOCK.finditer(text) if m["lang"] == "python")
        assert marked == len(ANY_PYTHON_BLOCK.findall(text)), (
            f"{doc.name}: a ```python block without a <!-- test:NAME --> marker right before it"
        )
    names = [snippet.name for snippet in snippets()]
    assert len(names) == len(set(names)), "two snippets share a name"
    assert set(PRINTS) <= set(names)


@pytest.fixture(scope="module")
def fake_provider() -> Iterator[FakeLLMProvider]:
    with FakeLLMProvider() as fake:
        yield fake


def snippet_env(base_url: str, fake: FakeLLMProvider) -> dict[str, str]:
    return {
        **os.environ,
        "BEARLUMEN_BASE_URL": base_url,
        "BEARLUMEN_API_KEY": f"sk_test_docs_{uuid.uuid4().hex[:8]}",
        "OPENAI_API_KEY": "sk-fake",
        "OPENAI_BASE_URL": fake.openai_base_url,
        "ANTHROPIC_API_KEY": "sk-ant-fake",
        "ANTHROPIC_BASE_URL": fake.anthropic_base_url,
        "OPENAI_ADMIN_KEY": OPENAI_ADMIN_KEY,
        "ANTHROPIC_ADMIN_KEY": ANTHROPIC_ADMIN_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # LiteLLM stays offline
    }


def run_snippet(snippet: Snippet, env: dict[str, str], cwd: Path) -> str:
    code = snippet.code
    for option in snippet.options:
        if option.startswith("needs:"):
            pytest.importorskip(option.split(":", 1)[1])
        if option.startswith("after:"):
            code = SNIPPETS[option.split(":", 1)[1]].code + "\n\n" + code
    if "pytest" in snippet.options:
        (cwd / f"test_{snippet.name.replace('-', '_')}.py").write_text(code)
        # Our plugin alone: loading every plugin installed here (schemathesis, hypothesis, …)
        # took 8 of a snippet's 9 seconds. That pip installs the plugin for a user's pytest is
        # test_package.py's test of its entry point.
        env = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += ["-p", "bearlumen.testing", str(cwd)]
    else:
        command = [sys.executable, "-c", code]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{snippet.doc} {snippet.name}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# The two README snippets a newcomer pastes first have tests of their own below.
@pytest.mark.parametrize("name", sorted(set(SNIPPETS) - {"quickstart", "llm-one-line"}))
def test_the_docs_snippet_runs_as_written(
    name: str, server: LocalServer, fake_provider: FakeLLMProvider, tmp_path: Path
) -> None:
    out = run_snippet(SNIPPETS[name], snippet_env(server.base_url, fake_provider), tmp_path)
    if name in PRINTS:
        assert out.splitlines() == PRINTS[name]


def test_the_quickstart_runs_twice_against_one_server_with_the_environment_it_names(
    fake_provider: FakeLLMProvider, tmp_path: Path
) -> None:
    # As pasted: the README's own exports (its key; its base URL, the port `bearlumen serve
    # --port 8787` listens on, here a free port instead), the same server for both runs.
    readme = (ROOT / "README.md").read_text()
    exports = re.search(r"<!-- test:quickstart-env -->\n```bash\n(.*?)\n```", readme, re.S)
    assert exports, "README.md lacks the quickstart's environment block"
    named = dict(re.findall(r"^export (\w+)=(\S+)", exports[1], re.M))
    assert named["BEARLUMEN_BASE_URL"] == "http://127.0.0.1:8787"
    assert "bearlumen serve --port 8787" in readme
    with LocalServer() as base_url:
        env = {**snippet_env(base_url, fake_provider), **named, "BEARLUMEN_BASE_URL": base_url}
        for _ in range(2):
            assert run_snippet(SNIPPETS["quickstart"], env, tmp_path).splitlines() == [
                "support-bot: $4.5"
            ]


def test_the_one_line_llm_snippet_meters_its_call(
    fake_provider: FakeLLMProvider, tmp_path: Path
) -> None:
    # It never flushes by hand: the exit hook delivers the event before the process ends.
    with LocalServer() as base_url:
        env = snippet_env(base_url, fake_provider)
        run_snippet(SNIPPETS["llm-one-line"], env, tmp_path)
        import bearlumen

        with bearlumen.Client(api_key=env["BEARLUMEN_API_KEY"], base_url=base_url) as reader:
            events = reader.usage.query()["events"]
    assert [(e["agentId"], e["endUserId"], e["metadata"]["model"]) for e in events] == [
        ("support-bot", "eu_1", "gpt-4o")
    ]
