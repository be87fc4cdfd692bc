#!/usr/bin/env bash
# Stop the Redis started by start.sh: SHUTDOWN NOSAVE over the socket, else SIGTERM to the pidfile's pid.
set -euo pipefail
PORT="${REDIS_PORT:-6379}"
DIR="${TRAWL_CACHE:-$HOME/.cache/trawl}/redis/$PORT"
log() { echo "[redis/${0##*/}] $*" >&2; }

pid="$(cat "$DIR/redis.pid" 2>/dev/null || true)"
if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
  log "no Redis started by start.sh on port $PORT"; rm -f "$DIR/redis.pid"; exit 0
fi
log "stopping Redis on port $PORT (pid $pid)"
redis-cli -h 127.0.0.1 -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$pid" 2>/dev/null; then log "still alive after 10 s: SIGKILL"; kill -KILL "$pid"; fi
rm -f "$DIR/redis.pid"
log "stopped"
