#!/usr/bin/env bash
# Start the services the integration tests need: OpenSearch, Redis, moto (fake S3). Idempotent: a service that
# already answers on its port is left as it is. Used by `make services-up` and .ci/run.
# Env: OPENSEARCH_PORT, REDIS_PORT, MOTO_PORT, PYTHON (for moto), TRAWL_CACHE; see each start.sh.
set -euo pipefail
INFRA="$(cd "$(dirname "$0")" && pwd)"
start=$SECONDS

os_url="$("$INFRA/opensearch/start.sh")"
redis_url="$("$INFRA/redis/start.sh")"
moto_url="$("$INFRA/moto/start.sh")"

cat <<EOF
services up in $((SECONDS - start)) s:
  OpenSearch  $os_url
  Redis       $redis_url
  moto (S3)   $moto_url
stop them with infra/services-down.sh
EOF
