#!/usr/bin/env bash
# instructions.sh - server instructions per request, counted by callgrind:
# repeatable whatever else the machine does (no wall clock involved).
# For each mode a fresh SQLite store, the release server under callgrind,
# setup (1-share init, 30 secrets, a service account with reveal+export on
# the environment), 50 warm-up requests, counters zeroed, N requests, dump.
#
#   bench/instructions.sh                          # inject/reveal × root/sa token, N=500
#   MODES="inject_root inject_sa" N=1000 bench/instructions.sh
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
N="${N:-500}"
MODES="${MODES:-inject_root inject_sa reveal_root reveal_sa}"
export PORT="${PORT:-18777}"
[ "${BUILD:-1}" = "1" ] && (cd "$ROOT" && cargo build --release >&2)
WORK="$(mktemp -d)"
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cp "$ROOT/target/release/coffer" "$WORK/coffer"
for mode in $MODES; do
  rm -f "$WORK"/coffer.db* "$WORK"/callgrind.out*
  printf 'disable_mlock = true\n[listener]\naddress = "127.0.0.1:%s"\ntls_disable = true\n[storage]\nurl = "sqlite://%s/coffer.db"\n' \
    "$PORT" "$WORK" > "$WORK/coffer.toml"
  valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
    "$WORK/coffer" server --config "$WORK/coffer.toml" > "$WORK/server.log" 2>&1 &
  PID=$!
  python3 "$HERE/callgrind_drive.py" "$mode" "$N" > /dev/null
  ir=$(callgrind_annotate "$WORK"/callgrind.out.1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  kill "$PID"; wait "$PID" 2>/dev/null || true
  echo "$mode: $((ir / N)) instructions/request (N=$N)"
done
