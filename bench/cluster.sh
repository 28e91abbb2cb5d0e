#!/usr/bin/env bash
# cluster.sh - inject throughput (30-secret environment, bench/lua/coffer_inject.lua)
#   of one coffer server vs two servers over one PostgreSQL schema, with the
#   CPU per inject of coffer, of PostgreSQL and of the whole machine, so the
#   scaling on machines with more cores can be projected.
#
#   bench/cluster.sh                          # release build, 10 s per figure, 32 connections
#   DURATION=5s RUNS=3 CONNS=64 bench/cluster.sh
#
# Env: PG_URL (default postgres://postgres@127.0.0.1:5432/test; a fresh schema is
#   created and dropped), DURATION, RUNS (default 1), CONNS (total, split over the
#   servers; one wrk per server), BUILD=0 to skip `cargo build --release`,
#   COFFER_BIN to run another binary.
# Nothing is pinned: servers, PostgreSQL and wrk share the machine's cores, which
#   is the point (two servers on a 2-core box compete with PostgreSQL and wrk).
# Output: one JSON line per figure on stdout, then a "scaling" line.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "${BUILD:-1}" = "1" ]; then
  echo "# cargo build --release" >&2
  cargo build --release >&2
fi
export COFFER_BIN="${COFFER_BIN:-$TARGET/release/coffer}"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
command -v psql >/dev/null || { echo "psql missing" >&2; exit 1; }
exec python3 "$HERE/cluster.py"
