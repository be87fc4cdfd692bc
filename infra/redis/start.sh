#!/usr/bin/env bash
# Start a throwaway Redis on 127.0.0.1:${REDIS_PORT:-6379} (daemonized, no persistence) and wait for PONG.
# Installs redis-server from Debian first if it is missing (needs root). Files: $TRAWL_CACHE/redis/<port>/.
set -euo pipefail
PORT="${REDIS_PORT:-6379}"
DIR="${TRAWL_CACHE:-$HOME/.cache/trawl}/redis/$PORT"
log() { echo "[redis/${0##*/}] $*" >&2; }

if ! command -v redis-server >/dev/null; then
  [[ $EUID -eq 0 ]] || { log "redis-server missing: run as root or 'sudo apt-get install -y redis-server'"; exit 1; }
  log "installing redis-server (apt-get)"
  # No service is started by the package here (policy-rc.d); we run our own instance below.
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

if [[ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" == PONG ]]; then
  log "Redis already answers on port $PORT: leaving it as it is"
  echo "redis://127.0.0.1:$PORT/0"; exit 0
fi

mkdir -p "$DIR"
log "starting redis-server on 127.0.0.1:$PORT (folder $DIR)"
# save "" and appendonly no: a cache/queue for dev and tests, nothing worth persisting.
redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --dir "$DIR" \
  --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" --save "" --appendonly no

for ((i = 0; i < 50; i++)); do
  if [[ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" == PONG ]]; then
    log "PONG"; echo "redis://127.0.0.1:$PORT/0"; exit 0
  fi
  sleep 0.2
done
log "no PONG after 10 s; last log lines:"; tail -n 20 "$DIR/redis.log" >&2; exit 1
