#!/usr/bin/env python3
"""hvac (the Python Vault client) against a fresh, uninitialized coffer server.

Driven by tests/it/vault_kv.rs, which starts the server on SQLite or
PostgreSQL, sets VAULT_ADDR and runs this with $COFFER_TEST_PYTHON (set by
scripts/test to its virtualenv's python), else python3. By hand: VAULT_ADDR=http://127.0.0.1:8200
python3 tests/py/test_hvac.py. Exits 0 only if every check passed; a missing
hvac is a failure (exit 3), never a skip.
"""
import os
import sys
import warnings

HVAC_VERSION = "2.4.0"

try:
    import hvac
    import requests
except ImportError as e:  # a failure, not a skip
    print(
        f"hvac is not installed for {sys.executable} ({e}): run scripts/test "
        f"(a virtualenv with hvac under the target dir), or python3 -m pip install hvac=={HVAC_VERSION}",
        file=sys.stderr,
    )
    sys.exit(3)

ADDR = os.environ["VAULT_ADDR"]
PATH = "acme/api/production/DB"
warnings.simplefilter("ignore", DeprecationWarning)


def check(what, got, want):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")
    print(f"ok  {what}")


def raises(what, exc, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc as e:
        print(f"ok  {what} ({type(e).__name__})")
        return e
    raise AssertionError(f"{what}: expected {exc.__name__}")


def native(token, path, body):
    r = requests.post(f"{ADDR}/api/v1/{path}", json=body, headers={"X-Vault-Token": token}, timeout=30)
    if r.status_code >= 300:
        raise AssertionError(f"native POST {path}: {r.status_code} {r.text}")
    return r.json()["data"]


def main():
    anon = hvac.Client(url=ADDR)

    # Seal ceremony.
    check("is_initialized before init", anon.sys.is_initialized(), False)
    init = anon.sys.initialize(secret_shares=3, secret_threshold=2)
    check("init shares", (len(init["keys"]), len(init["keys_base64"])), (3, 3))
    root_token = init["root_token"]
    check("is_initialized", anon.sys.is_initialized(), True)
    check("is_sealed", anon.sys.is_sealed(), True)
    st = anon.sys.submit_unseal_keys(init["keys"][:2])
    check("unsealed", st["sealed"], False)
    check("threshold / shares", (st["t"], st["n"]), (2, 3))
    status = anon.sys.read_seal_status()
    check("seal-status sealed", status["sealed"], False)
    health = anon.sys.read_health_status(method="GET")
    check("health", (health["initialized"], health["sealed"]), (True, False))
    check("health HEAD", anon.sys.read_health_status().status_code, 200)

    root = hvac.Client(url=ADDR, token=root_token)
    check("is_authenticated", root.is_authenticated(), True)
    native(root_token, "orgs", {"slug": "acme", "name": "Acme"})
    native(root_token, "orgs/acme/projects", {"slug": "api", "name": "API"})
    for env in ("production", "staging"):
        native(root_token, "orgs/acme/projects/api/environments", {"slug": env, "name": env})

    kv = root.secrets.kv.v2
    # Put / get / versions.
    v1 = kv.create_or_update_secret(PATH, secret={"value": "one"})
    check("v1", v1["data"]["version"], 1)
    kv.create_or_update_secret(PATH, secret={"user": "app", "pass": "pw"}, cas=1)
    got = kv.read_secret_version(PATH, raise_on_deleted_version=True)
    check("read latest", got["data"]["data"], {"user": "app", "pass": "pw"})
    check("latest version", got["data"]["metadata"]["version"], 2)
    check("read v1", kv.read_secret_version(PATH, version=1, raise_on_deleted_version=True)["data"]["data"], {"value": "one"})
    raises("stale cas", hvac.exceptions.InvalidRequest, kv.create_or_update_secret, PATH, secret={"x": "y"}, cas=1)

    # Patch (hvac reads, merges and writes with cas).
    kv.patch(PATH, {"host": "db1"})
    check("patched", kv.read_secret_version(PATH, raise_on_deleted_version=True)["data"]["data"],
          {"user": "app", "pass": "pw", "host": "db1"})

    # Delete / undelete / destroy.
    kv.delete_latest_version_of_secret(PATH)
    deleted = kv.read_secret_version(PATH, raise_on_deleted_version=False)
    check("deleted data is null", deleted["data"]["data"], None)
    check("deleted has metadata", deleted["data"]["metadata"]["version"], 3)
    raises("read of a deleted version", hvac.exceptions.InvalidPath, kv.read_secret_version, PATH,
           raise_on_deleted_version=True)
    kv.undelete_secret_versions(PATH, versions=[3])
    check("undeleted", kv.read_secret_version(PATH, raise_on_deleted_version=True)["data"]["data"]["host"], "db1")
    kv.delete_secret_versions(PATH, versions=[2])
    kv.destroy_secret_versions(PATH, versions=[1])
    meta = kv.read_secret_metadata(PATH)["data"]
    check("current_version", meta["current_version"], 3)
    check("v1 destroyed", meta["versions"]["1"]["destroyed"], True)
    check("v2 deleted", meta["versions"]["2"]["deletion_time"] != "", True)
    check("v3 live", (meta["versions"]["3"]["deletion_time"], meta["versions"]["3"]["destroyed"]), ("", False))

    # Metadata write; list at every level; config.
    kv.update_metadata(PATH, max_versions=5, custom_metadata={"owner": "payments"})
    meta = kv.read_secret_metadata(PATH)["data"]
    check("metadata", (meta["max_versions"], meta["custom_metadata"]), (5, {"owner": "payments"}))
    check("list orgs", kv.list_secrets("")["data"]["keys"], ["acme/"])
    check("list envs", sorted(kv.list_secrets("acme/api")["data"]["keys"]), ["production/", "staging/"])
    check("list keys", kv.list_secrets("acme/api/production")["data"]["keys"], ["DB"])
    raises("empty folder", hvac.exceptions.InvalidPath, kv.list_secrets, "acme/api/staging")
    check("config", kv.read_configuration()["data"]["cas_required"], False)

    # Tokens.
    me = root.auth.token.lookup_self()["data"]
    check("lookup-self policies", me["policies"], ["root"])
    child = root.auth.token.create(ttl="1h", display_name="ci")["auth"]
    check("child ttl", 3500 < child["lease_duration"] <= 3600, True)
    child_client = hvac.Client(url=ADDR, token=child["client_token"])
    check("child lookup", child_client.auth.token.lookup_self()["data"]["accessor"], child["accessor"])
    child_client.auth.token.revoke_self()
    check("revoked child", child_client.is_authenticated(), False)
    # policies=["default"] is Vault's self-only token, never a root token.
    small = root.auth.token.create(policies=["default"], ttl="1h")["auth"]
    check("default child policies", small["policies"], ["default"])
    small_client = hvac.Client(url=ADDR, token=small["client_token"])
    check("default child lookup", small_client.auth.token.lookup_self()["data"]["policies"], ["default"])
    small_client.auth.token.renew_self()
    raises("default child reads no secret", hvac.exceptions.Forbidden,
           small_client.secrets.kv.v2.read_secret_version, PATH, raise_on_deleted_version=True)
    raises("default child lists nothing", hvac.exceptions.Forbidden,
           small_client.secrets.kv.v2.list_secrets, "acme/api/production")
    raises("default child makes no child", hvac.exceptions.Forbidden, small_client.auth.token.create, ttl="1h")
    raises("unknown policy set", hvac.exceptions.InvalidRequest, root.auth.token.create, policies=["default", "admin"])
    small_client.auth.token.revoke_self()
    check("revoked default child", small_client.is_authenticated(), False)

    # Another token, by token and by accessor (root may manage any).
    kid = root.auth.token.create(ttl="1h", display_name="kid")["auth"]
    check("derived token is no orphan", kid["orphan"], False)
    looked = root.auth.token.lookup(kid["client_token"])["data"]
    check("lookup by token", (looked["accessor"], looked["id"], looked["path"], looked["orphan"]),
          (kid["accessor"], kid["client_token"], "auth/token/create", False))
    check("lookup by accessor", root.auth.token.lookup_accessor(kid["accessor"])["data"]["id"], "")
    renewed = root.auth.token.renew(kid["client_token"], increment="2h")
    check("renew keeps the expiry", (renewed["auth"]["lease_duration"] <= 3600, len(renewed["warnings"])), (True, 1))
    check("renew by accessor", root.auth.token.renew_accessor(kid["accessor"])["auth"]["client_token"], "")
    kid_client = hvac.Client(url=ADDR, token=kid["client_token"])
    grandkid = hvac.Client(url=ADDR, token=kid_client.auth.token.create(ttl="30m")["auth"]["client_token"])
    check("revoke by token", root.auth.token.revoke(kid["client_token"]).status_code, 204)
    check("revoked by token", kid_client.is_authenticated(), False)
    check("and its derived token", grandkid.is_authenticated(), False)
    raises("lookup of a revoked token", hvac.exceptions.Forbidden, root.auth.token.lookup, kid["client_token"])
    kid2 = root.auth.token.create(ttl="1h")["auth"]
    check("revoke by accessor", root.auth.token.revoke_accessor(kid2["accessor"]).status_code, 204)
    check("revoked by accessor", hvac.Client(url=ADDR, token=kid2["client_token"]).is_authenticated(), False)
    raises("lookup of a revoked accessor", hvac.exceptions.InvalidRequest,
           root.auth.token.lookup_accessor, kid2["accessor"])
    gone = root.auth.token.revoke_accessor(kid2["accessor"])
    check("revoking it again warns", len(gone["warnings"]), 1)

    # What the server says about itself.
    check("auth methods", sorted(root.sys.list_auth_methods()["data"]), ["cert/", "token/", "userpass/"])
    check("audit devices", root.sys.list_enabled_audit_devices()["data"]["coffer/"]["type"], "coffer")
    check("root capabilities", root.sys.get_capabilities([f"secret/data/{PATH}"])["data"],
          {f"secret/data/{PATH}": ["root"]})
    check("key status", root.sys.get_encryption_key_status()["data"]["term"], 1)
    check("mount tune", root.sys.read_mount_configuration("secret")["data"]["options"], {"version": "2"})

    # A viewer may list and read metadata, never reveal or write.
    native(root_token, "users", {"email": "viewer@acme.test", "password": "correct horse battery"})
    native(root_token, "orgs/acme/members", {"email": "viewer@acme.test", "role": "member"})
    native(root_token, "orgs/acme/grants",
           {"user": "viewer@acme.test", "project": "api", "environment": "production", "role": "viewer"})
    viewer = hvac.Client(url=ADDR)
    viewer.auth.userpass.login("viewer@acme.test", "correct horse battery")
    check("viewer authenticated", viewer.is_authenticated(), True)
    check("viewer policies", viewer.auth.token.lookup_self()["data"]["policies"], ["default", "coffer-grants"])
    caps = viewer.sys.get_capabilities([f"secret/data/{PATH}", f"secret/metadata/{PATH}", "sys/seal"])["data"]
    check("viewer capabilities", caps, {f"secret/data/{PATH}": ["deny"], f"secret/metadata/{PATH}": ["read"],
                                        "sys/seal": ["deny"]})
    raises("viewer cannot look up root's token", hvac.exceptions.Forbidden, viewer.auth.token.lookup, root_token)
    check("viewer cannot revoke it", len(viewer.auth.token.revoke(root_token)["warnings"]), 1)
    check("root's token lives", root.is_authenticated(), True)
    raises("wrong password is 400, as Vault", hvac.exceptions.InvalidRequest,
           hvac.Client(url=ADDR).auth.userpass.login, "viewer@acme.test", "wrong horse battery")
    vkv = viewer.secrets.kv.v2
    check("viewer lists", vkv.list_secrets("acme/api/production")["data"]["keys"], ["DB"])
    vkv.read_secret_metadata(PATH)
    e = raises("viewer reveal", hvac.exceptions.Forbidden, vkv.read_secret_version, PATH, raise_on_deleted_version=True)
    check("403 message", e.errors, ["permission denied"])
    raises("viewer write", hvac.exceptions.Forbidden, vkv.create_or_update_secret, PATH, secret={"value": "x"})

    # Purge; seal.
    kv.delete_metadata_and_all_versions(PATH)
    raises("purged", hvac.exceptions.InvalidPath, kv.read_secret_metadata, PATH)
    # Rekey through sys/rekey/* (hvac's paths), then unseal with the new shares.
    check("generate-root idle", root.sys.read_root_generation_progress()["started"], False)
    rk = root.sys.start_rekey(secret_shares=3, secret_threshold=2)
    check("rekey started", rk["started"], True)
    done = root.sys.rekey_multi(init["keys"][:2], nonce=rk["nonce"])
    check("rekey complete", (done["complete"], len(done["keys"])), (True, 3))

    check("seal", root.sys.seal().status_code, 204)
    check("sealed", anon.sys.is_sealed(), True)
    check("unseal with new shares", anon.sys.submit_unseal_keys(done["keys"][1:])["sealed"], False)
    check("seal again", root.sys.seal().status_code, 204)
    raises("sealed read", hvac.exceptions.VaultDown, kv.read_secret_metadata, "acme/api/production/X")
    print("test_hvac.py: all checks passed")


if __name__ == "__main__":
    main()
