#!/usr/bin/env bash
# Start OpenSearch (plain HTTP on loopback, no security plugin) and wait until it is green or yellow.
#
# Usage: infra/opensearch/start.sh               one node on 127.0.0.1:${OPENSEARCH_PORT:-9200}
#        infra/opensearch/start.sh --cluster 3   N nodes on HTTP 9200.., transport 9300.. (failure tests)
# Env:   OPENSEARCH_PORT, OPENSEARCH_TRANSPORT_PORT (default port+100), OPENSEARCH_JAVA_OPTS (default
#        "-Xms512m -Xmx512m", 384m per node for a cluster), TRAWL_CACHE.
# Prints the URL on stdout once healthy; exits 0 at once if a node already answers on the port.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"

CLUSTER=0
case "${1:-}" in
  "") ;;
  --cluster) CLUSTER="${2:?--cluster needs a node count}"; [[ $CLUSTER -ge 2 ]] || { echo "--cluster N needs N >= 2" >&2; exit 2; } ;;
  *) echo "usage: $0 [--cluster N]" >&2; exit 2 ;;
esac

"$HERE/fetch.sh" >/dev/null                 # no-op once assembled

# The node refuses to run as root: when root, run it as a system user that owns the node's folders.
RUN_AS=()
if [[ $EUID -eq 0 ]]; then
  if ! id -u "$OS_USER" >/dev/null 2>&1; then
    log "creating system user $OS_USER"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$OS_USER"
  fi
  RUN_AS=(runuser -u "$OS_USER" --)
  # That user must reach the (root-owned, read-only) home inside the cache; /root is usually 0700.
  # Grant traverse-only (o+x) on the ancestors that lack it: nothing becomes listable.
  d="$CACHE"
  while [[ "$d" != / ]]; do
    if [[ -z "$(find "$d" -maxdepth 0 -perm -o=x)" ]]; then log "chmod o+x $d (so $OS_USER can reach $CACHE)"; chmod o+x "$d"; fi
    d="$(dirname "$d")"
  done
fi

cluster_name() { curl -s -m 2 "http://127.0.0.1:$1/" | sed -n 's/.*"cluster_name" *: *"\([^"]*\)".*/\1/p'; }

# start_node DIR_NAME NODE_NAME HTTP_PORT TRANSPORT_PORT HEAP_OPTS [-Esetting ...]
start_node() {
  local dir="$NODES/$1" name=$2 http=$3 transport=$4 heap=$5; shift 5
  mkdir -p "$dir"/{data,logs,tmp}
  # Each node gets its own config copy: jvm.options holds paths relative to the home (logs/gc.log, heap
  # dumps in data/), and the home is shared and read-only; point them into this node's folder instead.
  rm -rf "$dir/config" && cp -r "$OS_HOME/config" "$dir/config"
  sed -i -e "s#logs/#$dir/logs/#g" -e "s#HeapDumpPath=data#HeapDumpPath=$dir/data#" "$dir/config/jvm.options"
  rm -f "$dir/opensearch.pid"
  if [[ $EUID -eq 0 ]]; then chown -R "$OS_USER:" "$dir"; fi
  log "starting $name: http $http, transport $transport, $heap, folder $dir"
  if ! "${RUN_AS[@]}" env JAVA_HOME="$JAVA_HOME" OPENSEARCH_PATH_CONF="$dir/config" OPENSEARCH_TMPDIR="$dir/tmp" \
      OPENSEARCH_JAVA_OPTS="$heap" "$OS_HOME/bin/opensearch" -d -p "$dir/opensearch.pid" \
      -Epath.data="$dir/data" -Epath.logs="$dir/logs" -Enetwork.host=127.0.0.1 \
      -Ehttp.port="$http" -Etransport.port="$transport" -Enode.name="$name" "$@" >"$dir/logs/startup.out" 2>&1; then
    log "$name failed to start:"; tail -n 30 "$dir/logs/startup.out" >&2; exit 1
  fi
}

# wait_healthy HTTP_PORT NODE_COUNT DIR_NAME...: poll cluster health for up to OPENSEARCH_START_TIMEOUT s
# (default 300: a busy 2-core machine has taken over 120 s); fail early if a node died.
wait_healthy() {
  local port=$1 count=$2 start=$SECONDS h dir; shift 2
  while (( SECONDS - start < ${OPENSEARCH_START_TIMEOUT:-300} )); do
    h="$(curl -s -m 2 "http://127.0.0.1:$port/_cluster/health" || true)"
    if [[ $h =~ \"status\":\"(green|yellow)\" && $h == *"\"number_of_nodes\":$count,"* ]]; then
      log "healthy (${BASH_REMATCH[1]}, $count node(s)) after $((SECONDS - start)) s"; return 0
    fi
    for dir in "$@"; do
      dir="$NODES/$dir"
      # The node writes its pidfile early in bootstrap; a missing one after 30 s or a dead pid means it failed.
      if { [[ -f $dir/opensearch.pid ]] && ! kill -0 "$(cat "$dir/opensearch.pid")" 2>/dev/null; } ||
         { [[ ! -f $dir/opensearch.pid ]] && (( SECONDS - start > 30 )); }; then
        log "node in $dir is not running; last log lines:"
        tail -n 30 "$dir/logs/"*.log "$dir/logs/startup.out" 2>/dev/null | tail -n 40 >&2; exit 1
      fi
    done
    sleep 1
  done
  log "not healthy after ${OPENSEARCH_START_TIMEOUT:-300} s; logs under $NODES"; exit 1
}

if [[ $CLUSTER -eq 0 ]]; then
  PORT="${OPENSEARCH_PORT:-9200}"
  if curl -s -m 2 -o /dev/null "http://127.0.0.1:$PORT/"; then
    log "a node already answers on port $PORT (cluster '$(cluster_name "$PORT")'): leaving it as it is"
    echo "http://127.0.0.1:$PORT"; exit 0
  fi
  # Folder per port, so nodes on different ports never share data.
  start_node "$PORT" "trawl-$PORT" "$PORT" "${OPENSEARCH_TRANSPORT_PORT:-$((PORT + 100))}" \
    "${OPENSEARCH_JAVA_OPTS:--Xms512m -Xmx512m}" -Ecluster.name=trawl -Ediscovery.type=single-node
  wait_healthy "$PORT" 1 "$PORT"
  echo "http://127.0.0.1:$PORT"
else
  # A separate folder per cluster node ("cluster-920K"): a single node's data would refuse to join.
  names=() seeds=() dirs=()
  for ((k = 0; k < CLUSTER; k++)); do names+=("n$k"); seeds+=("127.0.0.1:$((9300 + k))"); dirs+=("cluster-$((9200 + k))"); done
  IFS=, ; all_names="${names[*]}" all_seeds="${seeds[*]}"; unset IFS
  for ((k = 0; k < CLUSTER; k++)); do
    if curl -s -m 2 -o /dev/null "http://127.0.0.1:$((9200 + k))/"; then
      [[ "$(cluster_name $((9200 + k)))" == trawl-cluster ]] ||
        { log "port $((9200 + k)) is taken by another node (stop it first: infra/opensearch/stop.sh)"; exit 1; }
      log "n$k already answers on port $((9200 + k))"; continue
    fi
    start_node "${dirs[k]}" "n$k" $((9200 + k)) $((9300 + k)) "${OPENSEARCH_JAVA_OPTS:--Xms384m -Xmx384m}" \
      -Ecluster.name=trawl-cluster -Ediscovery.seed_hosts="$all_seeds" -Ecluster.initial_cluster_manager_nodes="$all_names"
  done
  wait_healthy 9200 "$CLUSTER" "${dirs[@]}"
  echo "http://127.0.0.1:9200"
fi
