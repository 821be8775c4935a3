#!/usr/bin/env bash
# Run the whole test suite: lint, unit tests (tests/) and e2e tests (e2e/, as root).
#
#   sudo scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || { echo "test.sh: run scripts/install.sh first (no .venv)" >&2; exit 1; }

.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Unit and e2e tests in parallel on every core; each e2e test has its own cribd,
# socket and dirs, and each worker its own registries.
exec "$py" -m pytest -n "${CRIB_TEST_WORKERS:-auto}" -q "$@"
