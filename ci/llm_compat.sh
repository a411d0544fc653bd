#!/usr/bin/env bash
# client.llm against the older majors: openai 1.x and anthropic 0.x (the last ones on httpx
# rather than httpx2), in an environment of their own beside the main one. Runs
# tests/test_llm*.py there. For .ci/run: `bash ci/llm_compat.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${LLM_COMPAT_VENV:-.venv-llm-compat}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q -e ".[dev]" "openai>=1.40,<2" "anthropic>=0.40,<1"
"$venv/bin/python" - <<'PY'
import anthropic, openai
print(f"== client.llm against openai {openai.__version__} and anthropic {anthropic.__version__}")
assert openai.__version__.startswith("1."), openai.__version__
assert anthropic.__version__.startswith("0."), anthropic.__version__
PY
"$venv/bin/python" -m pytest -q tests/test_llm.py tests/test_llm_pricing.py
