#!/usr/bin/env bash
# instructions.sh - server instructions per request, counted by callgrind:
# repeatable whatever else the machine does (no wall clock involved).
# For each mode a fresh SQLite store, the release server under callgrind,
# setup (1-share init, 30 secrets, a service account with reveal+export on
# the environment), 50 warm-up requests, counters zeroed, N requests, dump.
#
#   bench/instructions.sh                          # inject/reveal × root/sa token, N=500
#   MODES="inject_root inject_sa" N=1000 bench/instructions.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432/test bench/instructions.sh
#       # PostgreSQL instead of SQLite: a fresh schema per mode (dropped after)
#   BUILD=0 BIN=/path/to/coffer bench/instructions.sh   # measure a given binary
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
N="${N:-500}"
MODES="${MODES:-inject_root inject_sa reveal_root reveal_sa}"
export PORT="${PORT:-18777}"
[ "${BUILD:-1}" = "1" ] && (cd "$ROOT" && cargo build --release >&2)
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/coffer}"
WORK="$(mktemp -d)"
SCHEMA=""
drop_schema() { [ -n "$SCHEMA" ] && psql -q "$PG_URL" -c "DROP SCHEMA $SCHEMA CASCADE" >/dev/null 2>&1; SCHEMA=""; }
trap 'kill "${PID:-0}" 2>/dev/null || true; drop_schema; rm -rf "$WORK"' EXIT
cp "$BIN" "$WORK/coffer"
for mode in $MODES; do
  rm -f "$WORK"/coffer.db* "$WORK"/callgrind.out*
  if [ -n "${PG_URL:-}" ]; then
    drop_schema
    SCHEMA="bench_$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    psql -q "$PG_URL" -c "CREATE SCHEMA $SCHEMA" >/dev/null
    case "$PG_URL" in *\?*) sep='&' ;; *) sep='?' ;; esac
    url="${PG_URL}${sep}options=-c%20search_path%3D${SCHEMA}"
  else
    url="sqlite://$WORK/coffer.db"
  fi
  printf 'disable_mlock = true\n[listener]\naddress = "127.0.0.1:%s"\ntls_disable = true\n[storage]\nurl = "%s"\n' \
    "$PORT" "$url" > "$WORK/coffer.toml"
  valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
    "$WORK/coffer" server --config "$WORK/coffer.toml" > "$WORK/server.log" 2>&1 &
  PID=$!
  python3 "$HERE/callgrind_drive.py" "$mode" "$N" > /dev/null
  ir=$(callgrind_annotate "$WORK"/callgrind.out.1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  kill "$PID"; wait "$PID" 2>/dev/null || true
  echo "$mode: $((ir / N)) instructions/request (N=$N)"
done
