#!/usr/bin/env bash
# Start moto's server (a fake AWS: S3 etc.) on 127.0.0.1:${MOTO_PORT:-5000} in the background; wait for HTTP.
# Uses the project's Python: ${PYTHON:-python} -m moto.server if it has moto[server], else moto_server on PATH.
# Files (pidfile, log): $TRAWL_CACHE/moto/<port>/.
set -euo pipefail
PORT="${MOTO_PORT:-5000}"
DIR="${TRAWL_CACHE:-$HOME/.cache/trawl}/moto/$PORT"
PY="${PYTHON:-python}"
URL="http://127.0.0.1:$PORT"
log() { echo "[moto/${0##*/}] $*" >&2; }
answers() { curl -s -m 2 -o /dev/null "$URL/moto-api/"; }

if answers; then log "something already answers on $URL: leaving it as it is"; echo "$URL"; exit 0; fi

# moto.server imports flask, so this also checks that the [server] extra is installed.
if "$PY" -c 'import moto.server' 2>/dev/null; then
  cmd=("$PY" -m moto.server)
elif command -v moto_server >/dev/null; then
  cmd=(moto_server)
else
  log "moto[server] not found: install the project's test extras, or set PYTHON to a Python that has it"; exit 1
fi

mkdir -p "$DIR"
log "starting ${cmd[*]} on $URL (log $DIR/moto.log)"
# setsid: its own session, so a Ctrl-C in the calling terminal or make does not take it down.
setsid nohup "${cmd[@]}" -H 127.0.0.1 -p "$PORT" >"$DIR/moto.log" 2>&1 </dev/null &
echo $! >"$DIR/moto.pid"

for ((i = 0; i < 60; i++)); do
  if answers; then log "answering"; echo "$URL"; exit 0; fi
  kill -0 "$(cat "$DIR/moto.pid")" 2>/dev/null || break
  sleep 0.5
done
log "moto did not answer; last log lines:"; tail -n 20 "$DIR/moto.log" >&2; exit 1
