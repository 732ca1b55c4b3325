#!/usr/bin/env bash
# Install the project with its development tools into .venv and run every check:
# ruff (lint + format), mypy (strict), the import-layer contracts, then the whole pytest suite
# (arguments go to pytest: `bash scripts/test.sh -m "not slow"` is the fast loop). The store
# tests also run on a real PostgreSQL server when scripts/ci_postgres.sh can install and start one.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy (strict, bot and tests)"
mypy
echo "== import layers and cycles (import-linter, rules in pyproject.toml)"
lint-imports
if [ -f bot/store/migrate.py ] && [ -f scripts/ci_postgres.sh ] && [ -z "${BOT_TEST_POSTGRES_URL:-}" ]; then
    echo "== PostgreSQL for the store tests"
    if pg_env=$(bash scripts/ci_postgres.sh); then
        eval "$pg_env"
    else
        echo "PostgreSQL could not be started; the PostgreSQL store tests will be skipped" >&2
    fi
fi
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    echo "== Chromium for the browser test (Debian package)"
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "Chromium could not be installed; the browser test will be skipped" >&2
    else
        echo "no root apt-get here: the browser test will be skipped" >&2
    fi
fi
echo "== pytest"
pytest -n 2 -q -p no:cacheprovider "$@"
