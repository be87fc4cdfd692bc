#!/usr/bin/env bash
# Stop what services-up.sh started. Tries every service even if one fails; exits non-zero if any did.
set -uo pipefail
INFRA="$(cd "$(dirname "$0")" && pwd)"
rc=0
for svc in moto redis opensearch; do
  "$INFRA/$svc/stop.sh" || { echo "[services-down] $svc/stop.sh failed" >&2; rc=1; }
done
[[ $rc -eq 0 ]] && echo "services down"
exit $rc
