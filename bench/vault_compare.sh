#!/usr/bin/env bash
# vault_compare.sh - coffer's KV v2 mount against OpenBao 2.7.2 with the SAME
# wrk workloads (the OpenBao kit's bench.sh: KV v2 GET at 8 and 64 connections,
# KV v2 POST at 8), alternating the two servers round by round in one session,
# same pinning (servers on SERVER_CPUS, wrk on WRK_CPUS). Per server and round:
# idle RSS (initialized, unsealed, before load), post-load RSS, and
# server CPU per request (from /proc/PID/stat, via the kit's SERVER_PID).
#
#   bench/vault_compare.sh
#   ROUNDS=1 DURATION=3s BUILD=0 bench/vault_compare.sh        # smoke test
#
# Knobs: ROUNDS (2), DURATION per wrk run (15s), SERVER_CPUS (0), WRK_CPUS (1),
# POST_SPREAD (1, the kit's default: every write to one key; N>1 makes keys
# with a "-" that coffer refuses as variable names), BUILD (1: cargo
# build --release first), COFFER_BIN (default $CARGO_TARGET_DIR or target/,
# release/coffer), BAO_BIN (default: CI's tool cache, else the kit's fetch.sh),
# KIT (/work/shared/anchors/openbao, never modified), OUT (results dir).
# coffer runs on a fresh SQLite file, OpenBao on fresh raft storage; both with
# their root token, TLS off, loopback. Every process started here is stopped
# by its own PID.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
KIT="${KIT:-/work/shared/anchors/openbao}"
ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-15s}"
SERVER_CPUS="${SERVER_CPUS:-0}"
WRK_CPUS="${WRK_CPUS:-1}"
export POST_SPREAD="${POST_SPREAD:-1}"
OUT="${OUT:-$ROOT/target/bench/vault-compare-$(date -u +%Y%m%d-%H%M%S)}"
COFFER_PORT="${COFFER_PORT:-8300}"
KV_PATH="acme/api/production/APP"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
log() { echo "# $*" >&2; }

if [ -z "${BAO_BIN:-}" ]; then
  if [ -x /root/.cache/coffer-ci-tools/openbao-2.7.2/bao ]; then
    BAO_BIN=/root/.cache/coffer-ci-tools/openbao-2.7.2/bao
  else
    eval "$(WORK="$OUT/bao-bin" "$KIT/fetch.sh")"
  fi
fi
export BAO_BIN
if [ "${BUILD:-1}" = "1" ]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release >&2)
fi
COFFER_BIN="${COFFER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/coffer}"
[ -x "$COFFER_BIN" ] || { echo "no coffer binary at $COFFER_BIN (BUILD=1 or COFFER_BIN=...)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
log "coffer: $COFFER_BIN ($(git -C "$ROOT" rev-parse --short HEAD)); bao: $("$BAO_BIN" version)"

rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

COFFER_PID=""
stop_coffer() {
  if [ -n "$COFFER_PID" ] && kill -0 "$COFFER_PID" 2>/dev/null; then
    kill -TERM "$COFFER_PID"
    for _ in $(seq 1 100); do kill -0 "$COFFER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$COFFER_PID" 2>/dev/null && kill -KILL "$COFFER_PID"
  fi
  COFFER_PID=""
}
BAO_WORK=""
stop_bao() { [ -n "$BAO_WORK" ] && WORK="$BAO_WORK" "$KIT/stop.sh" || true; BAO_WORK=""; }
trap 'stop_coffer; stop_bao' EXIT

# start_coffer DIR: fresh SQLite, init 3/2, unseal, the bench's org tree.
start_coffer() {
  local w="$1" base="http://127.0.0.1:$COFFER_PORT" init root k
  mkdir -p "$w"
  printf '[listener]\naddress = "127.0.0.1:%s"\ntls_disable = true\n[storage]\nurl = "sqlite://%s/coffer.db"\n' \
    "$COFFER_PORT" "$w" > "$w/coffer.toml"
  COFFER_LOG_FORMAT=text taskset -c "$SERVER_CPUS" "$COFFER_BIN" server --config "$w/coffer.toml" \
    > "$w/stdout.log" 2> "$w/server.log" &
  COFFER_PID=$!
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/sys/health")" = "000" ] || break
    sleep 0.1
  done
  init="$(curl -fsS -X PUT "$base/v1/sys/init" -d '{"secret_shares":3,"secret_threshold":2}')"
  for i in 0 1; do
    k="$(json "['keys'][$i]" <<<"$init")"
    curl -fsS -X PUT "$base/v1/sys/unseal" -d "{\"key\":\"$k\"}" >/dev/null
  done
  root="$(json "['root_token']" <<<"$init")"
  native() {
    curl -fsS -X POST -H "X-Vault-Token: $root" -H "Content-Type: application/json" "$base/api/v1/$1" -d "$2" >/dev/null
  }
  native orgs '{"slug":"acme","name":"Acme"}'
  native orgs/acme/projects '{"slug":"api","name":"API"}'
  native orgs/acme/projects/api/environments '{"slug":"production","name":"production"}'
  native orgs/acme/projects/api/environments '{"slug":"inject","name":"inject"}'
  export BASE_URL="$base" TOKEN="$root"
}

# bench NAME ROUND PID: idle RSS (unsealed, before any request of the kit),
# the kit's seeding and workloads, post-load RSS; RSS into $OUT/rss.jsonl.
bench() {
  local name="$1" round="$2" pid="$3" idle post mount=0
  [ "$name" = openbao ] && mount=1
  sleep 2
  idle="$(rss_kb "$pid")"
  WORKLOADS="get_c8 get_c64 post_c8" SEED=1 MOUNT_KV="$mount" KV_MOUNT=secret KV_PATH="$KV_PATH" \
    INJECT_PREFIX=acme/api/inject INJECT_BUNDLE=acme/api/production/INJECT_BUNDLE \
    SERVER_PID="$pid" WRK_CPUS="$WRK_CPUS" DURATION="$DURATION" RUNS=1 \
    OUT="$OUT/$name-r$round" "$KIT/bench.sh" >&2
  post="$(rss_kb "$pid")"
  echo "{\"server\":\"$name\",\"round\":$round,\"idle_rss_kb\":$idle,\"post_rss_kb\":$post}" >> "$OUT/rss.jsonl"
}

: > "$OUT/rss.jsonl"
for r in $(seq 1 "$ROUNDS"); do
  order="coffer openbao"
  [ $((r % 2)) = 0 ] && order="openbao coffer"
  for s in $order; do
    log "round $r: $s"
    if [ "$s" = coffer ]; then
      start_coffer "$OUT/coffer-work-r$r"
      bench coffer "$r" "$COFFER_PID"
      stop_coffer
    else
      BAO_WORK="$OUT/bao-work-r$r"
      eval "$(WORK="$BAO_WORK" FRESH=1 BAO_CPUS="$SERVER_CPUS" BAO_BIN="$BAO_BIN" "$KIT/start.sh")"
      bench openbao "$r" "$BAO_PID"
      stop_bao
    fi
    sleep 3
  done
done

python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import glob, json, os, statistics, sys
out = sys.argv[1]
rows = {}
for f in glob.glob(os.path.join(out, "*-r*/results.jsonl")):
    server = os.path.basename(os.path.dirname(f)).rsplit("-r", 1)[0]
    for line in open(f):
        if line.strip():
            r = json.loads(line)
            rows.setdefault((server, r["workload"]), []).append(r)
rss = [json.loads(l) for l in open(os.path.join(out, "rss.jsonl")) if l.strip()]
med = lambda xs: statistics.median(xs) if xs else float("nan")
def m(server, wl, key):
    return med([r[key] for r in rows.get((server, wl), []) if key in r])
def mr(server, key):
    return med([r[key] / 1024 for r in rss if r["server"] == server])
print("| measure | coffer | OpenBao 2.7.2 | coffer / OpenBao |")
print("|---|---|---|---|")
def line(label, c, o, fmt):
    ratio = (c / o) if o else float("nan")
    print(f"| {label} | {fmt % c} | {fmt % o} | {ratio:.2f}× |")
for wl, label in (("get_c8", "GET, 8 conns"), ("get_c64", "GET, 64 conns"), ("post_c8", "PUT/POST, 8 conns")):
    line(f"{label}: req/s", m("coffer", wl, "rps"), m("openbao", wl, "rps"), "%.0f")
    line(f"{label}: p50 ms", m("coffer", wl, "p50_ms"), m("openbao", wl, "p50_ms"), "%.2f")
    line(f"{label}: p99 ms", m("coffer", wl, "p99_ms"), m("openbao", wl, "p99_ms"), "%.2f")
    line(f"{label}: server CPU µs/req", m("coffer", wl, "server_cpu_us_per_req"),
         m("openbao", wl, "server_cpu_us_per_req"), "%.0f")
    nc = sum(r["err_status"] for r in rows.get(("coffer", wl), []))
    no = sum(r["err_status"] for r in rows.get(("openbao", wl), []))
    print(f"| {label}: non-2xx answers | {nc} | {no} | |")
line("idle RSS MB", mr("coffer", "idle_rss_kb"), mr("openbao", "idle_rss_kb"), "%.1f")
line("post-load RSS MB", mr("coffer", "post_rss_kb"), mr("openbao", "post_rss_kb"), "%.1f")
runs = len({(r["server"], r["round"]) for r in rss}) // 2
print()
print(f"Medians over {runs} alternated round(s); servers pinned to one CPU, wrk to another.")
PY
log "results in $OUT"
