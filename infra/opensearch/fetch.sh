#!/usr/bin/env bash
# Fetch OpenSearch + k-NN from Maven and assemble a runnable home folder.
#
# Why Maven: OpenSearch is in neither PyPI nor Debian, and this machine reaches only package registries.
# Maven carries the integration-test zip (server + transport-netty4 only, no bundled JDK), the k-NN plugin
# zip and the modules that zip lacks; we add those modules by hand (see shared/notes/opensearch-from-maven.md).
#
# Usage: infra/opensearch/fetch.sh        prints the assembled home folder on its last line
# Env:   TRAWL_CACHE (default ~/.cache/trawl); everything lives in $TRAWL_CACHE/opensearch, outside the clone.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"      # versions, cache paths, JAVA_HOME, log()

DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.6.1   # pinned: Maven 3.8's default (2.8) is ancient
M2="$CACHE/m2"                           # private local Maven repository, kept between runs
DL="$CACHE/downloads"
MARKER="$OS_HOME/.trawl-assembled"

# module folder | Maven artifact (org.opensearch.plugin) | plugin class | extended.plugins
MODULES=(
  "lang-painless|lang-painless|org.opensearch.painless.PainlessPlugin|"
  "analysis-common|analysis-common|org.opensearch.analysis.common.CommonAnalysisPlugin|lang-painless"
  "mapper-extras|mapper-extras-client|org.opensearch.index.mapper.MapperExtrasPlugin|"
  "reindex|reindex-client|org.opensearch.index.reindex.ReindexPlugin|"
)

if [[ -f "$MARKER" ]]; then
  log "already assembled: $OS_HOME"
  echo "$OS_HOME"
  exit 0
fi

command -v java >/dev/null || { log "java not found (apt-get install -y openjdk-17-jdk-headless)"; exit 1; }
command -v mvn >/dev/null || { log "mvn not found (apt-get install -y maven)"; exit 1; }
command -v unzip >/dev/null || { log "unzip not found (apt-get install -y unzip)"; exit 1; }
mkdir -p "$M2" "$DL"
# -q: only errors are printed (to stderr, so stdout stays the home path); Debian's mvn still emits colour
# resets, hence the sed.
mvn_() { mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$M2" "$@" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2; }

# Strip "-<version>.jar" so jars can be compared by artifact name ("jackson-core-2.17.2.jar" -> "jackson-core").
jar_name() { basename "$1" | sed -E 's/-[0-9].*\.jar$//'; }

# --- 1. download ---------------------------------------------------------------------------------------------
log "fetching server and k-NN zips (Maven cache: $M2)"
mvn_ "$DEP_PLUGIN:copy" -DoutputDirectory="$DL" \
  -Dartifact="org.opensearch.distribution.integ-test-zip:opensearch:$OS_VERSION:zip"
mvn_ "$DEP_PLUGIN:copy" -DoutputDirectory="$DL" \
  -Dartifact="org.opensearch.plugin:opensearch-knn:$KNN_VERSION:zip"

for spec in "${MODULES[@]}"; do
  IFS='|' read -r folder artifact _ _ <<<"$spec"
  log "fetching module $artifact with its runtime dependencies"
  work="$DL/modules/$folder"
  rm -rf "$work" && mkdir -p "$work/jars"
  # copy-dependencies needs a project: a one-dependency pom lists the module plus its transitive jars.
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>trawl.infra</groupId><artifactId>fetch-$folder</artifactId><version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.opensearch.plugin</groupId><artifactId>$artifact</artifactId><version>$OS_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  mvn_ -f "$work/pom.xml" "$DEP_PLUGIN:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$work/jars"
done

# --- 2. assemble into a temporary folder, renamed at the end so a failed run never looks assembled ------------
TMP="$OS_HOME.tmp"
rm -rf "$TMP" "$OS_HOME"
log "unpacking server"
unzip -q "$DL/opensearch-$OS_VERSION.zip" -d "$TMP.unzip"
mv "$TMP.unzip/opensearch-$OS_VERSION" "$TMP" && rmdir "$TMP.unzip"

declare -A IN_LIB=()
for j in "$TMP"/lib/*.jar; do IN_LIB[$(jar_name "$j")]=1; done

for spec in "${MODULES[@]}"; do
  IFS='|' read -r folder artifact classname extends <<<"$spec"
  dest="$TMP/modules/$folder"
  mkdir -p "$dest"
  kept=()
  for j in "$DL/modules/$folder/jars"/*.jar; do
    # A jar that lib/ already has (server, lucene, jackson, ...) must not be copied: the node refuses to
    # start with "jar hell" when a class is on the classpath twice.
    [[ -n "${IN_LIB[$(jar_name "$j")]:-}" ]] && continue
    cp "$j" "$dest/" && kept+=("$(basename "$j")")
  done
  log "module $folder: ${kept[*]}"
  cat >"$dest/plugin-descriptor.properties" <<EOF
description=$folder module (assembled by trawl infra/opensearch/fetch.sh)
version=$OS_VERSION
name=$folder
classname=$classname
java.version=11
opensearch.version=$OS_VERSION
extended.plugins=$extends
has.native.controller=false
EOF
done

# Painless compiles scripts into classes at run time, so it needs class-loader permissions.
cat >"$TMP/modules/lang-painless/plugin-security.policy" <<'EOF'
grant {
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
EOF

# k-NN extends lang-painless, so it installs only after the modules are in place. (Its Maven zip lacks the
# Faiss/nmslib native libraries: use engine "lucene" here.)
log "installing k-NN plugin $KNN_VERSION"
if ! "$TMP/bin/opensearch-plugin" install --batch "file://$DL/opensearch-knn-$KNN_VERSION.zip" \
    >"$DL/knn-install.log" 2>&1; then
  cat "$DL/knn-install.log" >&2; exit 1
fi

mv "$TMP" "$OS_HOME"
touch "$MARKER"
rm -rf "$DL"        # the zips are copies of what the Maven cache ($M2) already holds
log "assembled: $OS_HOME"
echo "$OS_HOME"
