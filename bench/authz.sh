#!/usr/bin/env bash
# authz.sh - what authorization costs on the hot path: inject (30 secrets) and
# reveal at 32 connections with the root token and with a service-account
# token scoped to the environment (reveal + export), alternated run by run
# (root, sa, sa, root, …) on fresh servers from the same binary.
#
#   bench/authz.sh                      # SQLite, 3 rounds of 10 s runs
#   BACKEND=postgres ROUNDS=3 bench/authz.sh
#
# Env: ROUNDS (3), DURATION (10s), CONNS ("32"), WORKLOADS ("inject reveal"),
# BACKEND, OUT, WAIT_QUIET (1), plus everything run.sh takes.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="${OUT:-$ROOT/target/bench/authz-$(date +%Y%m%d-%H%M%S)}"
ROUNDS="${ROUNDS:-3}"
mkdir -p "$OUT"
if [ "${BUILD:-1}" = "1" ]; then (cd "$ROOT" && cargo build --release >&2); fi
cp "$ROOT/target/release/coffer" "$OUT/coffer-bin"
export COFFER_BIN="$OUT/coffer-bin" BUILD=0 LIFECYCLE=0 RUNS=1
export CONNS="${CONNS:-32}" WORKLOADS="${WORKLOADS:-inject reveal}"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="root sa"; else order="sa root"; fi
  for kind in $order; do
    TOKEN_KIND=$kind OUT="$OUT/$kind-$round" "$HERE/run.sh" >/dev/null
  done
done
python3 - "$OUT" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
rows = {}
for f in glob.glob(os.path.join(out, "*-*", "figures.jsonl")):
    kind = os.path.basename(os.path.dirname(f)).split("-")[0]
    for line in open(f):
        fig = json.loads(line)
        if "p99_ms" not in fig:
            continue
        r = rows.setdefault((fig["figure"], kind), {"p99": [], "p50": [], "rps": [], "cpu": []})
        r["p99"].append(fig["p99_ms"]["median"]); r["p50"].append(fig["p50_ms"]["median"])
        r["rps"].append(fig["rps"]["median"]); r["cpu"].append(fig["server_cpu_us_per_req"]["median"])
lines = ["| figure | token | runs | req/s | p50 ms | p99 ms | server CPU µs/req |", "|---|---|---|---|---|---|---|"]
med = lambda v: statistics.median(v)
for (fig, kind) in sorted(rows):
    r = rows[(fig, kind)]
    lines.append(f"| {fig} | {kind} | {len(r['p99'])} | {med(r['rps']):.0f} | {med(r['p50']):.2f} | "
                 f"{med(r['p99']):.2f} (min {min(r['p99']):.2f}, max {max(r['p99']):.2f}) | {med(r['cpu']):.0f} |")
for fig in sorted({f for f, _ in rows}):
    if (fig, "root") in rows and (fig, "sa") in rows:
        a, b = med(rows[(fig, "root")]["p99"]), med(rows[(fig, "sa")]["p99"])
        c, d = med(rows[(fig, "root")]["cpu"]), med(rows[(fig, "sa")]["cpu"])
        lines.append(f"\n{fig}: service-account p99 {100 * (b - a) / a:+.1f} % vs root; server CPU {100 * (d - c) / c:+.1f} %")
text = "\n".join(lines)
open(os.path.join(out, "authz.md"), "w").write(text + "\n")
print(text)
PY
