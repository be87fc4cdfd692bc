#!/usr/bin/env bash
# The README's test command: virtualenv, real services, the whole suite, services stopped again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(infra/venv.sh)
# The browser test drives Debian's Chromium (Playwright never downloads a browser here).
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium for the browser test" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2
fi
export PYTHON="$venv/bin/python" PATH="$venv/bin:$PATH"
started=0
cleanup() { [ "$started" = 1 ] && infra/services-down.sh || true; }
trap cleanup EXIT
# Services already running (a developer's `make services-up`) are reused and left running.
if ! curl -fsS -m 2 http://127.0.0.1:9200/_cluster/health >/dev/null 2>&1; then started=1; fi
infra/services-up.sh
# In this run a missing service is a failure, not a skip.
export TRAWL_REQUIRE_OPENSEARCH=1 TRAWL_REQUIRE_SERVICES=1 TRAWL_REQUIRE_BROWSER=1
# The slowest tests are named at the end: what to look at first when CI nears its time budget (30 min).
"$PYTHON" -m pytest --durations=25 "$@"
