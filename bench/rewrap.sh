#!/usr/bin/env bash
# rewrap.sh - DEK re-wrap throughput (DEKs/s) on SQLite and PostgreSQL: the
# criterion-less bench benches/rewrap.rs seeds REWRAP_ROWS secret versions
# (1,000 per secret, every DEK under KEK v1) straight through SQL, rotates the
# org's KEK and times the service's rewrap_batch loop (what each
# `POST /api/v1/orgs/{org}/keks/rewrap {"batch": N}` runs, HTTP framing
# excluded) until every DEK is under v2, then checks that a sample decrypts.
# Target (performance issue): >= 20,000 DEKs/s on PostgreSQL.
#
#   bench/rewrap.sh                              # both backends, 1,000,000 rows each
#   BACKENDS=postgres REWRAP_ROWS=100000 bench/rewrap.sh
#
# Knobs: BACKENDS ("sqlite postgres"), REWRAP_ROWS (1000000), REWRAP_BATCH (5000),
# RUNS (1 per backend), PG_URL (postgres://postgres@127.0.0.1:5432/test: a
# fresh schema per run, dropped on exit), BUILD (1: cargo bench --no-run first),
# REWRAP_BIN (the bench executable, when BUILD=0), OUT (results dir).
# Prints the bench's RESULT {json} lines (also in $OUT/results.jsonl) with
# the 1-min load average before and after each run: wall-clock figures are
# valid on a quiet machine only (load1 < 0.6).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
BACKENDS="${BACKENDS:-sqlite postgres}"
RUNS="${RUNS:-1}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
OUT="${OUT:-$ROOT/target/bench/rewrap-$(date -u +%Y%m%d-%H%M%S)}"
export REWRAP_ROWS="${REWRAP_ROWS:-1000000}" REWRAP_BATCH="${REWRAP_BATCH:-5000}"
mkdir -p "$OUT"
log() { echo "# $*" >&2; }

if [ "${BUILD:-1}" = "1" ]; then
  log "cargo bench --bench rewrap --no-run"
  REWRAP_BIN="$(cd "$ROOT" && cargo bench --bench rewrap --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "rewrap" and m.get("executable"):
        print(m["executable"])' | tail -n1)"
fi
[ -x "${REWRAP_BIN:-}" ] || { echo "no bench executable (BUILD=1 or REWRAP_BIN=...)" >&2; exit 1; }
# A private copy: the shared target dir may be rebuilt during the run.
cp "$REWRAP_BIN" "$OUT/rewrap-bench"
log "bench $REWRAP_BIN ($(git -C "$ROOT" rev-parse --short HEAD)); rows $REWRAP_ROWS, batch $REWRAP_BATCH; results in $OUT"

SCHEMA=""
drop_schema() {
  if [ -n "$SCHEMA" ]; then
    psql -q -v ON_ERROR_STOP=1 "$PG_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    SCHEMA=""
  fi
}
trap drop_schema EXIT
load1() { cut -d' ' -f1 /proc/loadavg; }

: > "$OUT/results.jsonl"
for run in $(seq 1 "$RUNS"); do
  for backend in $BACKENDS; do
    url=""
    if [ "$backend" = postgres ]; then
      SCHEMA="rewrap_bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
      psql -q -v ON_ERROR_STOP=1 "$PG_URL" -c "CREATE SCHEMA $SCHEMA" >/dev/null
      sep='?'; case "$PG_URL" in *\?*) sep='&';; esac
      url="${PG_URL}${sep}options=-c%20search_path%3D${SCHEMA}"
    fi
    l0="$(load1)"
    log "run $run, $backend (load1 $l0)"
    res="$(BACKEND="$backend" REWRAP_URL="$url" "$OUT/rewrap-bench" --bench 2> "$OUT/$backend-run$run.log" |
      sed -n 's/^RESULT //p')"
    [ -n "$res" ] || { cat "$OUT/$backend-run$run.log" >&2; exit 1; }
    l1="$(load1)"
    drop_schema
    line="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(run=int(sys.argv[2]), load1_before=float(sys.argv[3]), load1_after=float(sys.argv[4])); print(json.dumps(r))' \
      "$res" "$run" "$l0" "$l1")"
    echo "$line" | tee -a "$OUT/results.jsonl"
  done
done
