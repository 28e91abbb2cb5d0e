#!/usr/bin/env bash
# audit.sh - what the audit log costs: reveal (one value) and inject (30
# values) at 32 connections with auditing on (every request's record
# committed before the response leaves, group commit) and off
# (`[audit] enabled = false`), alternated run by run (on, off, off, on, …) on
# fresh servers from the same binary.
#
#   bench/audit.sh                      # SQLite, 3 rounds of 10 s runs
#   BACKEND=postgres bench/audit.sh
#
# Env: ROUNDS (3), DURATION (10s), CONNS ("32"), WORKLOADS ("reveal inject"),
# BACKEND, OUT, WAIT_QUIET (1), COFFER_BIN (a given binary instead of the
# release build), plus everything run.sh takes.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="${OUT:-$ROOT/target/bench/audit-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}"
mkdir -p "$OUT"
if [ "${BUILD:-1}" = "1" ]; then (cd "$ROOT" && cargo build --release >&2); fi
cp "${COFFER_BIN:-$ROOT/target/release/coffer}" "$OUT/coffer-bin"
export COFFER_BIN="$OUT/coffer-bin" BUILD=0 LIFECYCLE=0 RUNS=1
export CONNS="${CONNS:-32}" WORKLOADS="${WORKLOADS:-reveal inject}"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="on off"; else order="off on"; fi
  for audit in $order; do
    AUDIT=$audit OUT="$OUT/$audit-$round" "$HERE/run.sh" >/dev/null
  done
done
python3 - "$OUT" "${BACKEND:-sqlite}" <<'PY'
import glob, json, os, statistics, sys
out, backend = sys.argv[1], sys.argv[2]
rows = {}
for f in glob.glob(os.path.join(out, "*-*", "figures.jsonl")):
    audit = os.path.basename(os.path.dirname(f)).split("-")[0]
    for line in open(f):
        fig = json.loads(line)
        if "p99_ms" not in fig:
            continue
        r = rows.setdefault((fig["figure"], audit), {"p99": [], "p50": [], "rps": [], "cpu": []})
        r["p99"].append(fig["p99_ms"]["median"]); r["p50"].append(fig["p50_ms"]["median"])
        r["rps"].append(fig["rps"]["median"]); r["cpu"].append(fig["server_cpu_us_per_req"]["median"])
med = statistics.median
lines = [f"backend: {backend}", "",
         "| figure | audit | runs | req/s | p50 ms | p99 ms | server CPU µs/req |", "|---|---|---|---|---|---|---|"]
for (fig, audit) in sorted(rows):
    r = rows[(fig, audit)]
    lines.append(f"| {fig} | {audit} | {len(r['rps'])} | {med(r['rps']):.0f} (min {min(r['rps']):.0f}, max {max(r['rps']):.0f}) | "
                 f"{med(r['p50']):.2f} | {med(r['p99']):.2f} | {med(r['cpu']):.0f} |")
for fig in sorted({f for f, _ in rows}):
    if (fig, "on") in rows and (fig, "off") in rows:
        on, off = rows[(fig, "on")], rows[(fig, "off")]
        lines.append(f"\n{fig}: auditing costs {100 * (1 - med(on['rps']) / med(off['rps'])):.1f} % of throughput "
                     f"(target < 15 %); p99 {med(off['p99']):.2f} → {med(on['p99']):.2f} ms; "
                     f"server CPU {med(off['cpu']):.0f} → {med(on['cpu']):.0f} µs/req")
text = "\n".join(lines)
open(os.path.join(out, "audit.md"), "w").write(text + "\n")
print(text)
PY
