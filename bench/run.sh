#!/usr/bin/env bash
# run.sh - build coffer (release) and benchmark it on one host:
#   wrk load: reveal of one secret and inject of an environment of 30 secrets,
#   at 8 and 32 connections (2 wrk threads), server pinned to cpu0, wrk to cpu1;
#   lifecycle: start -> first /v1/sys/health (sealed), last unseal share ->
#   first 200 reveal, idle RSS / VmLck sealed and unsealed.
#
#   bench/run.sh                                   # SQLite, full run (~5 min of runs + quiet waits)
#   BACKEND=postgres bench/run.sh                  # fresh schema in PG_URL, dropped afterwards
#   DURATION=2s RUNS=1 STARTS=3 UNSEAL_RUNS=1 WAIT_QUIET=0 bench/run.sh   # smoke test
#
# Env (all optional):
#   BACKEND        sqlite (fresh file under $OUT/data) | postgres (fresh schema)
#   PG_URL         default postgres://postgres@127.0.0.1:5432/test; the schema goes in
#                  via ?options=-c%20search_path%3D<schema>; KEEP_SCHEMA=1 keeps it
#   DURATION       per wrk run (default 10s);  RUNS  runs per figure (default 3)
#   CONNS          connection counts (default "8 32");  THREADS  wrk threads (default 2)
#   WORKLOADS      subset of "reveal inject write_one write_spread" (writes: KV v2 POST of the
#                  OpenBao kit's body to one key, or cycling over 64 keys; need TOKEN_KIND=root)
#   TOKEN_KIND     root (default) | sa: load with a service-account token scoped
#                  to the environment (reveal + export), to price authorization
#   AUDIT          on (default) | off: `[audit] enabled = false`, to price auditing
#   SERVER_CPUS / WRK_CPUS   taskset CPU lists (default 0 / 1; empty = unpinned)
#   LIFECYCLE_CPUS CPU list for the lifecycle starts (default empty = unpinned)
#   STARTS         starts for the start-time median (default 10); UNSEAL_RUNS of them
#                  (default 5) also unseal and sample RSS after SETTLE_S (default 3) s
#   LOAD=0 / LIFECYCLE=0   skip a part
#   WAIT_QUIET     1 (default): before every run wait for 1-min load < QUIET_LOAD (0.6)
#                  and no rustc, up to QUIET_BUDGET_S (2400) s in total, then measure
#                  anyway (flagged in the output); 0: never wait (flag only).
#                  QUIET_BUDGET_FILE=path shares one budget between invocations
#   DISABLE_MLOCK=1  for hosts where key pages cannot be locked
#   BUILD=0        skip `cargo build --release`;  COFFER_BIN  binary to run
#   OUT            results dir (default target/bench/<timestamp>)
# Output: $OUT/summary.md (markdown), $OUT/figures.jsonl (one JSON line per figure,
#   also printed), $OUT/runs.jsonl (every run), raw wrk output, server logs.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT"
if [ "${BUILD:-1}" = "1" ]; then
  echo "# cargo build --release" >&2
  cargo build --release >&2
fi
command -v wrk >/dev/null || { echo "# wrk missing: apt-get install -y wrk" >&2; apt-get install -y wrk >&2; }
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
if [ "${BACKEND:-sqlite}" = "postgres" ]; then
  command -v psql >/dev/null || { echo "BACKEND=postgres needs psql" >&2; exit 1; }
fi
exec python3 "$HERE/cofferbench.py" run
