#!/usr/bin/env bash
# The README's test command: set up, start the local stack, lint (ruff), type-check (mypy), run every test.
# Fails on any failed test and when no test ran (pytest exit code 5).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

started_here=0
if ! segflow stack status >/dev/null 2>&1; then
  segflow stack up
  started_here=1
fi
cleanup() {
  if [ "$started_here" = 1 ] || [ "${CI:-}" = "true" ]; then segflow stack down || true; fi
}
trap cleanup EXIT

echo "[test] ruff"
ruff check engine features models tests
ruff format --check engine features models tests

echo "[test] mypy"
mypy

echo "[test] pytest"
set +e
python -m pytest -q -p no:cacheprovider --durations=25 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "[test] pytest ran no tests: failing" >&2
  exit 1
fi
exit "$rc"
