#!/usr/bin/env bash
# schemathesis.sh - the native API's OpenAPI contract, fuzzed: starts a dev
# server (throw-away SQLite), takes its root token, creates a fixture
# organization/project/environment/secret (`fx`/`fx`/`fx`/`FX_KEY`) so
# generated paths resolve, and runs schemathesis against
# /api/v1/openapi.json with the token. Checks: no 5xx (the designed 503s
# come only from a sealed server or an unavailable store, neither of which
# happens here), every answer's status documented and its body valid against
# the document (the checks not_a_server_error, status_code_conformance and
# response_schema_conformance). The same for the Vault-compatible sys/* reads and KV v2
# from the hand-written docs/openapi/vault.json. Then checks that the server is still alive and logged no panic.
#
#   bench/schemathesis.sh                      # 25 examples per operation
#   bench/schemathesis.sh --max-examples 200   # the long run
#   bench/schemathesis.sh --max-time 150       # a time budget (.ci/run)
#
# Options: --max-examples N, --max-time SECONDS, --seed N.
# Env: COFFER_BIN (a built binary; default: `cargo build` then the target
# dir's debug binary), OUT (report directory), COFFER_CI_TOOLS (where the
# schemathesis virtualenv lives, default ~/.cache/coffer-ci-tools).
# Prints a summary line: operations, test cases, failures; exit 1 on any
# failure. Reports (JUnit, NDJSON), the server log and the config in $OUT.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
say() { printf 'schemathesis.sh: %s\n' "$*" >&2; }

MAX_EXAMPLES=25
MAX_TIME=""
SEED=""
while [ $# -gt 0 ]; do
    case "$1" in
        --max-examples) MAX_EXAMPLES="${2:?--max-examples needs a number}"; shift 2 ;;
        --max-time) MAX_TIME="${2:?--max-time needs seconds}"; shift 2 ;;
        --seed) SEED="${2:?--seed needs a number}"; shift 2 ;;
        -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
        *) say "unknown argument $1 (see --help)"; exit 2 ;;
    esac
done

# --- schemathesis in its own virtualenv (it pins its own dependencies)
SCHEMATHESIS_VERSION=4.32.5
TOOLS="${COFFER_CI_TOOLS:-${HOME:?}/.cache/coffer-ci-tools}"
VENV="$TOOLS/schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -x "$VENV/bin/schemathesis" ]; then
    say "installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
    mkdir -p "$TOOLS"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# --- the server binary
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "${COFFER_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --locked --bin coffer >&2)
    COFFER_BIN="$TARGET/debug/coffer"
fi
OUT="${OUT:-$TARGET/schemathesis/$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"

# --- a dev server on a free port
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ADDR="http://127.0.0.1:$PORT"
"$COFFER_BIN" server --dev --dev-listen-address "127.0.0.1:$PORT" >"$OUT/dev.out" 2>"$OUT/server.log" &
SERVER=$!
cleanup() {
    if kill -0 "$SERVER" 2>/dev/null; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    # the dev output holds the root token and the unseal share
    rm -f "$OUT/dev.out"
}
trap cleanup EXIT
TOKEN=""
for _ in $(seq 1 300); do
    TOKEN="$(sed -n 's/^ *Root token: *//p' "$OUT/dev.out" 2>/dev/null | head -n1)"
    if [ -n "$TOKEN" ] && curl -fsS -o /dev/null "$ADDR/v1/sys/health"; then break; fi
    kill -0 "$SERVER" 2>/dev/null || { say "the dev server exited; see $OUT/server.log"; exit 1; }
    sleep 0.2
done
[ -n "$TOKEN" ] || { say "no root token from the dev server; see $OUT/server.log"; exit 1; }
export COFFER_SCHEMATHESIS_TOKEN="$TOKEN"

# --- the fixture: fx/fx/fx with one secret
api() { # METHOD PATH [BODY]
    curl -fsS -o /dev/null -X "$1" -H "Authorization: Bearer $COFFER_SCHEMATHESIS_TOKEN" \
        -H 'Content-Type: application/json' ${3:+--data "$3"} "$ADDR$2"
}
api POST /api/v1/orgs '{"slug":"fx","name":"Fixture"}'
api POST /api/v1/orgs/fx/projects '{"slug":"fx","name":"Fixture"}'
api POST /api/v1/orgs/fx/projects/fx/environments '{"slug":"fx","name":"Fixture"}'
api PUT /api/v1/orgs/fx/projects/fx/environments/fx/secrets/FX_KEY '{"value":"fixture-value"}'
api PUT /api/v1/orgs/fx/projects/fx/environments/fx/secrets/FX_KEY '{"value":"fixture-value-2"}'
curl -fsS -o "$OUT/openapi.json" "$ADDR/api/v1/openapi.json"

# --- schemathesis: the fixture's names for most path parameters, random
# ones for the rest (404s and refusals are part of the contract too)
# The token is never generated (with-security-parameters = false): junk
# tokens from one address are failed authentications, and after 20 in a
# minute coffer answers 429 to every junk token of that address (by design,
# src/service/limits.rs), which would turn the rest of the run into 429s.
cat >"$OUT/schemathesis.toml" <<'TOML'
headers = { Authorization = "Bearer ${COFFER_SCHEMATHESIS_TOKEN}" }
generation.with-security-parameters = false

[dictionaries.fx]
values = ["fx"]
[dictionaries.key]
values = ["FX_KEY"]

[parameters]
"path.org" = { dictionary = "fx", probability = 0.8 }
"path.project" = { dictionary = "fx", probability = 0.8 }
"path.env" = { dictionary = "fx", probability = 0.8 }
"path.key" = { dictionary = "key", probability = 0.5 }
"query.a" = { dictionary = "fx", probability = 0.5 }
"query.b" = { dictionary = "fx", probability = 0.5 }

[checks]
enabled = false
not_a_server_error.enabled = true
status_code_conformance.enabled = true
response_schema_conformance.enabled = true

# sys/health answers the status a client asks for (?activecode=…), a 5xx
# too: by request, not a server error
[[operations]]
include-operation-id = "sys-health"
checks.not_a_server_error.enabled = false
TOML
args=(
    --max-examples "$MAX_EXAMPLES"
    # one worker: with two, CPython 3.11's ast.parse (hypothesis describing a
    # filter) can fail with "AST constructor recursion depth mismatch"
    --workers 1
    --request-timeout 10
    --warnings off
    --no-color
)
if [ -n "$MAX_TIME" ]; then args+=(--max-time "$MAX_TIME"); fi
if [ -n "$SEED" ]; then args+=(--seed "$SEED"); fi
status=0
# NAME LOCATION [ARGS...]: one schemathesis run, reports in $OUT/NAME.*
run_schemathesis() {
    local name="$1" location="$2"
    shift 2
    say "$name: schemathesis $SCHEMATHESIS_VERSION, $location against $ADDR (reports in $OUT)"
    # from $OUT: schemathesis keeps a cache in its working directory
    (cd "$OUT" && "$VENV/bin/schemathesis" --config-file "$OUT/schemathesis.toml" run "${args[@]}" "$@" \
        --report junit,ndjson --report-dir "$OUT" \
        --report-junit-path "$OUT/$name.junit.xml" --report-ndjson-path "$OUT/$name.ndjson" \
        "$location") | tee "$OUT/$name.txt" || status=1
}
# The native API, from its generated document. Left out: logout and token
# revocation, which would revoke the run's own token (schemathesis takes the
# accessor from the token listing; tests/it covers both).
run_schemathesis native "$ADDR/api/v1/openapi.json" \
    --exclude-operation-id "post /api/v1/auth/logout" --exclude-operation-id "delete /api/v1/tokens/{accessor}"
# The Vault-compatible sys/* reads and KV v2, from the hand-written document.
run_schemathesis vault "$ROOT/docs/openapi/vault.json" --url "$ADDR"

# --- the server survived, and panicked nowhere
if ! kill -0 "$SERVER" 2>/dev/null; then
    say "FAIL: the server died during the run; see $OUT/server.log"
    status=1
elif ! curl -fsS -o /dev/null "$ADDR/v1/sys/health"; then
    say "FAIL: the server no longer answers sys/health"
    status=1
fi
if grep -q "panicked" "$OUT/server.log"; then
    say "FAIL: the server log has a panic:"
    grep -m3 -A3 "panicked" "$OUT/server.log" >&2
    status=1
fi
# requests made and their statuses, from the NDJSON reports
for name in native vault; do
python3 - "$OUT/$name.ndjson" "$name" <<'PY' || true
import collections, json, sys
statuses = collections.Counter()
for line in open(sys.argv[1], errors="replace"):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    rec = ev.get("ScenarioFinished", {}).get("recorder", {})
    if rec.get("label") == "GET /v1/sys/health":
        continue  # answers the status a client asks for, a 5xx too
    for inter in rec.get("interactions", {}).values():
        statuses[(inter.get("response") or {}).get("status_code", "none")] += 1
total = sum(statuses.values())
fives = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
by = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items(), key=str))
health = " (sys/health, which answers the status asked for, left out)" if sys.argv[2] == "vault" else ""
print(f"schemathesis.sh: {sys.argv[2]}: {total} requests{health} ({by}); {fives} answered 5xx")
PY
done
exit "$status"
