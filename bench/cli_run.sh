#!/usr/bin/env bash
# cli_run.sh - wall time of `coffer run -- true` with a 30-secret environment
# over loopback (dev server, plain HTTP, root token), against the baseline
# `env FOO=bar true`, with hyperfine (apt-get install hyperfine).
#
#   bench/cli_run.sh                          # uses target/release/coffer
#   COFFER_BIN=/path/to/coffer bench/cli_run.sh
#
# Env: COFFER_BIN, PORT (18299), RUNS (200), WARMUP (20).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
BIN="${COFFER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/coffer}"
PORT="${PORT:-18299}"
LOG="$(mktemp)"
"$BIN" server --dev --dev-listen-address "127.0.0.1:$PORT" >"$LOG" 2>/dev/null &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 1 100); do grep -q "export COFFER_TOKEN=" "$LOG" && break; sleep 0.1; done
TOKEN="$(sed -n 's/.*export COFFER_TOKEN=//p' "$LOG")"
export COFFER_ADDR="http://127.0.0.1:$PORT" COFFER_TOKEN="$TOKEN"
export COFFER_ORG=default COFFER_PROJECT=default COFFER_ENV=dev
for i in $(seq -w 1 30); do
  printf '%s' "value-$i-0123456789abcdef0123456789abcdef" | "$BIN" secrets set "SECRET_$i" >/dev/null
done
test "$("$BIN" run -- sh -c 'env | grep -c ^SECRET_')" = 30
JSON="$(mktemp)"
hyperfine -N --warmup "${WARMUP:-20}" --runs "${RUNS:-200}" --export-json "$JSON" \
  "$BIN run -- true" "env FOO=bar true"
python3 -c 'import json,sys
for r in json.load(open(sys.argv[1]))["results"]:
    print("median %.1f ms  %s" % (r["median"] * 1000, r["command"]))' "$JSON"
rm -f "$JSON"
