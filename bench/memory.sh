#!/usr/bin/env bash
# memory.sh - how much memory a coffer server holds: VmRSS sealed idle,
# unsealed idle (init 5/3, unseal, 30 secrets seeded), right after a load run
# (reveal and inject at each CONNS, KV v2 writes to 64 keys and to one key),
# and MEM_SETTLE_S (15) s later, with the resident anonymous memory split by
# kind (glibc main heap, other malloc arenas, thread stacks, other anonymous
# mappings) and the file-backed pages. Targets (performance issue): unsealed
# idle < 30 MiB, after load < 40 MiB; exits 1 if one is missed.
#
#   bench/memory.sh                                # SQLite, then PostgreSQL
#   BACKENDS=sqlite DURATION=3s bench/memory.sh    # quicker
#
# Knobs: BACKENDS ("sqlite postgres"), DURATION per wrk run (10s), CONNS ("32"),
# MEM_WORKLOADS ("reveal inject write_spread write_one"), MEM_SETTLE_S (15),
# SETTLE_S (3), SERVER_CPUS (none: unpinned, as in production; tokio then
# runs one worker per CPU), WRK_CPUS (none), PG_URL, BUILD (1), COFFER_BIN, OUT.
# Memory figures do not depend on the machine's load; the load runs only
# have to reach every code path.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT"
if [ "${BUILD:-1}" = "1" ]; then
  echo "# cargo build --release" >&2
  cargo build --release >&2
fi
export COFFER_BIN="${COFFER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/coffer}"
command -v wrk >/dev/null || { echo "# wrk missing: apt-get install -y wrk" >&2; apt-get install -y wrk >&2; }
export CONNS="${CONNS:-32}" SERVER_CPUS="${SERVER_CPUS:-none}" WRK_CPUS="${WRK_CPUS:-none}" WAIT_QUIET="${WAIT_QUIET:-0}"
OUT="${OUT:-$ROOT/target/bench/memory-$(date -u +%Y%m%d-%H%M%S)}"
rc=0
for b in ${BACKENDS:-sqlite postgres}; do
  BACKEND="$b" OUT="$OUT/$b" python3 "$HERE/cofferbench.py" memory || rc=1
done
exit $rc
