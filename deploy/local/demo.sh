#!/usr/bin/env bash
# The README's demo command: set up, bring the stack up, run the demo end to end.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/setup.sh
exec .venv/bin/segflow demo "$@"
