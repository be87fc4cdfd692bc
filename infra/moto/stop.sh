#!/usr/bin/env bash
# Stop the moto server started by start.sh (pidfile), and wait until it has exited.
set -euo pipefail
PORT="${MOTO_PORT:-5000}"
DIR="${TRAWL_CACHE:-$HOME/.cache/trawl}/moto/$PORT"
log() { echo "[moto/${0##*/}] $*" >&2; }

pid="$(cat "$DIR/moto.pid" 2>/dev/null || true)"
if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
  log "no moto server started by start.sh on port $PORT"; rm -f "$DIR/moto.pid"; exit 0
fi
log "stopping moto on port $PORT (pid $pid)"
kill -TERM "$pid"
for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$pid" 2>/dev/null; then log "still alive after 10 s: SIGKILL"; kill -KILL "$pid"; fi
rm -f "$DIR/moto.pid"
log "stopped"
