#!/usr/bin/env bash
# Stop OpenSearch nodes started by start.sh, through their pidfiles, and wait until they have exited.
#
# Usage: infra/opensearch/stop.sh              every node (all pidfiles under $CACHE/nodes)
#        infra/opensearch/stop.sh 9200 ...     only these node folders (e.g. cluster-9201 to kill one cluster node)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(cd "$(dirname "$0")" && pwd)/common.sh"

if [[ $# -gt 0 ]]; then
  pidfiles=(); for n in "$@"; do pidfiles+=("$NODES/$n/opensearch.pid"); done
else
  shopt -s nullglob; pidfiles=("$NODES"/*/opensearch.pid); shopt -u nullglob
fi

stopped=0
for pf in "${pidfiles[@]}"; do
  [[ -f $pf ]] || { log "no pidfile $pf"; continue; }
  pid="$(cat "$pf")"
  if ! kill -0 "$pid" 2>/dev/null; then log "stale pidfile $pf"; rm -f "$pf"; continue; fi
  log "stopping node $(basename "$(dirname "$pf")") (pid $pid)"
  kill -TERM "$pid"
  # SIGTERM makes OpenSearch flush and close cleanly; give it 60 s before forcing it.
  for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then log "pid $pid still alive after 60 s: SIGKILL"; kill -KILL "$pid"; sleep 1; fi
  rm -f "$pf"
  stopped=$((stopped + 1))
done
log "stopped $stopped node(s)"
