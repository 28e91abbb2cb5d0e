#!/usr/bin/env bash
# The OpenBao CLI against a fresh coffer server: operator init/unseal/status/
# seal, the kv commands on the secret/ mount, token lookup/renew/revoke (by
# token and accessor), auth/audit lists, capabilities, key status. Driven by
# tests/it/vault_kv.rs (which starts the server on SQLite or PostgreSQL);
# by hand: BAO_BIN=/path/to/bao BAO_ADDR=http://127.0.0.1:8200 tests/sh/bao_kv.sh
# (the server must be uninitialized). Exit 0 only if every check passed.
set -euo pipefail
: "${BAO_BIN:?set BAO_BIN to the bao binary}"
: "${BAO_ADDR:?set BAO_ADDR to the coffer server}"
export BAO_ADDR BAO_CLIENT_TIMEOUT=30s
unset BAO_TOKEN VAULT_TOKEN VAULT_ADDR
HOME="$(mktemp -d)"
export HOME
trap 'rm -rf "$HOME"' EXIT

step() { printf '=== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
bao() { "$BAO_BIN" "$@"; }
# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" = "$3" ] || fail "$1: got [$2], want [$3]"; }
# expect_code WANT CMD...: the exit code of CMD
expect_code() {
    local want=$1; shift
    set +e; "$@" >/dev/null 2>&1; local got=$?; set -e
    [ "$got" = "$want" ] || fail "exit code of [$*]: got $got, want $want"
}

step "operator init / status / unseal"
expect_code 2 bao status
init="$(bao operator init -key-shares=3 -key-threshold=2 -format=json)"
k0="$(jq -r '.unseal_keys_b64[0]' <<<"$init")"
k1="$(jq -r '.unseal_keys_hex[1]' <<<"$init")"
root="$(jq -r '.root_token' <<<"$init")"
[ -n "$root" ] && [ "$root" != null ] || fail "no root token in init output"
expect_eq "progress after one share" "$(bao operator unseal -format=json "$k0" | jq -r .progress)" 1
expect_code 2 bao status
bao operator unseal "$k1" >/dev/null
expect_code 0 bao status
expect_eq "sealed" "$(bao status -format=json | jq -r .sealed)" false
export BAO_TOKEN="$root"

step "an organization, a project and an environment (native API)"
native() {
    curl -fsS -X POST -H "X-Vault-Token: $root" -H 'Content-Type: application/json' \
        "$BAO_ADDR/api/v1/$1" -d "$2" >/dev/null
}
native orgs '{"slug":"acme","name":"Acme"}'
native orgs/acme/projects '{"slug":"api","name":"API"}'
native orgs/acme/projects/api/environments '{"slug":"production","name":"Production"}'
P=secret/acme/api/production/DB

step "token lookup"
expect_eq "policies" "$(bao token lookup -format=json | jq -c .data.policies)" '["root"]'

step "kv put / get"
bao kv put "$P" user=app pass=pw >/dev/null
expect_eq "user" "$(bao kv get -field=user "$P")" app

step "token create -policy=default: a self-only token, never root"
small="$(bao token create -policy=default -ttl=1h -format=json)"
expect_eq "default token policies" "$(jq -c .auth.policies <<<"$small")" '["default"]'
small_token="$(jq -r .auth.client_token <<<"$small")"
expect_eq "default token lookup" "$(BAO_TOKEN="$small_token" bao token lookup -format=json | jq -c .data.policies)" '["default"]'
expect_code 0 env BAO_TOKEN="$small_token" "$BAO_BIN" token renew
expect_code 2 env BAO_TOKEN="$small_token" "$BAO_BIN" kv get "$P"
expect_code 2 env BAO_TOKEN="$small_token" "$BAO_BIN" kv list secret/acme/api/production
expect_code 2 env BAO_TOKEN="$small_token" "$BAO_BIN" token create -ttl=1h
expect_code 2 bao token create -policy=default -policy=admin
expect_code 0 env BAO_TOKEN="$small_token" "$BAO_BIN" token revoke -self
expect_code 2 env BAO_TOKEN="$small_token" "$BAO_BIN" token lookup
bao kv put "$P" value=plain >/dev/null
expect_eq "value" "$(bao kv get -field=value "$P")" plain
expect_eq "version" "$(bao kv get -format=json "$P" | jq -r .data.metadata.version)" 2
expect_eq "v1 pass" "$(bao kv get -version=1 -field=pass "$P")" pw

step "kv list"
expect_eq "keys" "$(bao kv list -format=json secret/acme/api/production | jq -c .)" '["DB"]'
expect_eq "orgs" "$(bao kv list -format=json secret/ | jq -c .)" '["acme/"]'
expect_eq "envs" "$(bao kv list -format=json secret/acme/api | jq -c .)" '["production/"]'

step "kv patch"
bao kv patch "$P" extra=1 >/dev/null
expect_eq "patched" "$(bao kv get -format=json "$P" | jq -c '.data.data')" '{"extra":"1","value":"plain"}'

step "kv metadata get"
meta="$(bao kv metadata get -format=json "$P")"
expect_eq "current_version" "$(jq -r .data.current_version <<<"$meta")" 3

step "kv metadata put / patch (merge)"
bao kv metadata put -custom-metadata=owner=ops -custom-metadata=tier=gold "$P" >/dev/null
bao kv metadata patch -custom-metadata=team=payments -remove-custom-metadata=tier "$P" >/dev/null
expect_eq "merged custom_metadata" "$(bao kv metadata get -format=json "$P" | jq -c '.data.custom_metadata')" \
    '{"owner":"ops","team":"payments"}'

step "kv delete / undelete"
bao kv delete "$P" >/dev/null
# As with Vault: the deleted version's metadata prints, its data is null.
expect_eq "deleted data" "$(bao kv get -format=json "$P" | jq -c .data.data)" null
expect_code 2 bao kv get -field=extra "$P"
[ -n "$(bao kv metadata get -format=json "$P" | jq -r '.data.versions["3"].deletion_time')" ] || fail "no deletion_time"
bao kv undelete -versions=3 "$P" >/dev/null
expect_eq "undeleted" "$(bao kv get -field=extra "$P")" 1

step "kv delete of a key that never existed (idempotent)"
expect_code 0 bao kv delete secret/acme/api/production/NEVER_WRITTEN
expect_code 0 bao kv delete secret/acme/api/production/NEVER_WRITTEN

step "kv destroy"
bao kv destroy -versions=1 "$P" >/dev/null
expect_eq "destroyed data" "$(bao kv get -version=1 -format=json "$P" | jq -c .data.data)" null
expect_eq "destroyed" "$(bao kv metadata get -format=json "$P" | jq -r '.data.versions["1"].destroyed')" true

step "kv rollback"
bao kv rollback -version=2 "$P" >/dev/null
expect_eq "rolled back" "$(bao kv get -format=json "$P" | jq -c '.data.data')" '{"value":"plain"}'
expect_eq "new version" "$(bao kv get -format=json "$P" | jq -r .data.metadata.version)" 4

step "kv metadata delete"
bao kv metadata delete "$P" >/dev/null
expect_code 2 bao kv get "$P"

step "token lookup / renew / revoke of another token, by token and by accessor"
kid="$(bao token create -ttl=1h -display-name=kid -format=json)"
kid_token="$(jq -r .auth.client_token <<<"$kid")"
kid_acc="$(jq -r .auth.accessor <<<"$kid")"
expect_eq "derived token is no orphan" "$(jq -r .auth.orphan <<<"$kid")" false
expect_eq "lookup by token" "$(bao token lookup -format=json "$kid_token" | jq -r .data.accessor)" "$kid_acc"
expect_eq "lookup by token: id" "$(bao token lookup -format=json "$kid_token" | jq -r .data.id)" "$kid_token"
expect_eq "lookup by accessor" "$(bao token lookup -format=json -accessor "$kid_acc" | jq -r .data.id)" ""
expect_eq "root token path" "$(bao token lookup -format=json | jq -r .data.path)" auth/token/root
expect_code 0 bao token renew "$kid_token"
grandkid="$(BAO_TOKEN="$kid_token" bao token create -ttl=30m -field=token)"
expect_code 0 bao token revoke "$kid_token"
expect_code 2 bao token lookup "$kid_token"
expect_code 2 env BAO_TOKEN="$grandkid" "$BAO_BIN" token lookup
kid2_acc="$(bao token create -ttl=1h -field=token_accessor)"
expect_code 0 bao token lookup -accessor "$kid2_acc"
expect_code 0 bao token revoke -accessor "$kid2_acc"
expect_code 2 bao token lookup -accessor "$kid2_acc"

step "auth list, capabilities, key status, mount tune"
expect_eq "auth methods" "$(bao auth list -format=json | jq -c 'keys')" '["cert/","token/","userpass/"]'
expect_eq "userpass type" "$(bao auth list -format=json | jq -r '.["userpass/"].type')" userpass
expect_eq "root capabilities" "$(bao token capabilities "$P")" root
expect_eq "key term" "$(bao operator key-status -format=json | jq -r .term)" 1
expect_eq "secret/ tune" "$(bao read -format=json sys/mounts/secret/tune | jq -r .data.options.version)" 2
expect_eq "audit devices" "$(bao audit list -format=json | jq -r '.["coffer/"].type')" coffer

step "another mount is refused"
expect_code 2 bao secrets enable -path=other kv

step "operator rekey (new shares 3/2)"
rk="$(bao operator rekey -init -key-shares=3 -key-threshold=2 -format=json)"
nonce="$(jq -r .nonce <<<"$rk")"
[ -n "$nonce" ] && [ "$nonce" != null ] || fail "rekey init printed no nonce: $rk"
bao operator rekey -nonce="$nonce" "$k0" >/dev/null
new="$(bao operator rekey -nonce="$nonce" -format=json "$k1")"
n0="$(jq -r '.keys_base64[0]' <<<"$new")"
n2="$(jq -r '.keys_base64[2]' <<<"$new")"
[ -n "$n2" ] && [ "$n2" != null ] || fail "rekey printed no new keys: $new"

step "operator generate-root (init only: the flow is tested in vault_clients.rs)"
gr="$(bao operator generate-root -generate-otp)"
[ -n "$gr" ] || fail "generate-root -generate-otp printed nothing"
expect_eq "generate-root status" "$(bao operator generate-root -status -format=json | jq -r .started)" false

step "operator seal, unseal with the new shares"
bao operator seal >/dev/null
expect_code 2 bao status
bao operator unseal "$n0" >/dev/null
bao operator unseal "$n2" >/dev/null
expect_code 0 bao status
bao operator seal >/dev/null
expect_code 2 bao status
echo "bao_kv.sh: all checks passed"
