"""The package's own surface (`bearlumen/__init__.py`): what `import bearlumen` loads, the
names reached through it on first use, and the deprecated ones."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

import bearlumen

FRESH_INTERPRETER = """
import sys
import bearlumen
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("starlette", "uvicorn", "pytest"))
assert heavy == [] and "bearlumen.testing" not in sys.modules, heavy
with bearlumen.testing.LocalServer() as base_url:
    with bearlumen.Client(api_key="k", base_url=base_url) as client:
        assert client.end_users.list()["total"] == 0
print("ok")
"""


def test_bearlumen_testing_is_reachable_after_import_bearlumen_and_only_then_imported() -> None:
    # In a fresh interpreter: pytest here has already imported bearlumen.testing as a plugin.
    ran = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FRESH_INTERPRETER)], capture_output=True, text=True
    )
    assert ran.returncode == 0 and ran.stdout == "ok\n", ran.stderr


def test_spool_locked_error_is_deprecated_in_the_tree_and_not_exported() -> None:
    with pytest.warns(DeprecationWarning, match="never raised"):
        from bearlumen import SpoolLockedError
    assert issubclass(SpoolLockedError, bearlumen.BearLumenError)
    assert "SpoolLockedError" not in bearlumen.__all__
    assert "SpoolLockedError" in (bearlumen._errors.__doc__ or "")
    with pytest.raises(AttributeError, match="no_such_name"):
        bearlumen.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def test_every_exported_class_and_resource_method_has_a_docstring_of_its_own(
    client: bearlumen.Client,
) -> None:
    # Without one, help() and IDEs show dict's or Exception's docstring for a public name.
    missing = [
        name
        for name in bearlumen.__all__
        if isinstance(getattr(bearlumen, name), type)
        and not vars(getattr(bearlumen, name)).get("__doc__")
    ]
    for resource_name in ("end_users", "subscriptions", "usage", "cost_attribution"):
        resource = getattr(client, resource_name)
        for name in dir(resource):
            method = getattr(resource, name)
            if not name.startswith("_") and callable(method) and not method.__doc__:
                missing.append(f"{resource_name}.{name}")
    assert missing == []


def test_the_pytest_plugin_is_registered_for_pytest_to_load() -> None:
    # The fixtures `bearlumen_server` and `fake_llm_provider` reach a user's tests through this
    # entry point; the docs' pytest snippets load the plugin by name, so this is its test.
    plugins = importlib.metadata.entry_points(group="pytest11")
    assert [p.value for p in plugins if p.name == "bearlumen"] == ["bearlumen.testing"]
