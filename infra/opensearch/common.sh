# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this file
# Shared settings for fetch.sh / start.sh / stop.sh (sourced, not run).
OS_VERSION=2.19.1
KNN_VERSION=2.19.1.0

CACHE="${TRAWL_CACHE:-$HOME/.cache/trawl}/opensearch"   # outside the clone: survives fresh checkouts
OS_HOME="$CACHE/opensearch-$OS_VERSION-assembled"        # read-only once assembled; shared by all nodes
NODES="$CACHE/nodes"                                     # per node: config/ data/ logs/ tmp/ opensearch.pid
OS_USER=opensearch                                       # the node refuses to run as root

# The integ-test zip has no bundled JDK, so its scripts need JAVA_HOME.
if [[ -z "${JAVA_HOME:-}" ]] && command -v java >/dev/null; then
  JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
fi
export JAVA_HOME

log() { echo "[opensearch/${0##*/}] $*" >&2; }
