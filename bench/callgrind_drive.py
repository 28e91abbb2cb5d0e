"""Driver of bench/instructions.sh: set up a fresh coffer under callgrind,
then MODE (inject|reveal _ root|sa) N times between zeroing and dumping the
counters. Throw-away store: tokens in clear here."""
import json, os, sys, time, http.client, subprocess
PORT = int(os.environ.get("PORT", "18777"))
def req(m, p, body=None, tok=None):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    h = {"Content-Type": "application/json"}
    if tok: h["X-Vault-Token"] = tok
    c.request(m, p, json.dumps(body) if body is not None else None, h)
    r = c.getresponse(); d = r.read(); return r.status, (json.loads(d) if d else None)
for _ in range(100):
    try:
        req("GET", "/v1/sys/health"); break
    except Exception: time.sleep(0.5)
st, init = req("PUT", "/v1/sys/init", {"secret_shares": 1, "secret_threshold": 1})
req("PUT", "/v1/sys/unseal", {"key": init["keys"][0]})
tok = init["root_token"]
req("POST", "/api/v1/orgs", {"slug": "o", "name": "o"}, tok)
req("POST", "/api/v1/orgs/o/projects", {"slug": "p", "name": "p"}, tok)
req("POST", "/api/v1/orgs/o/projects/p/environments", {"slug": "e", "name": "e"}, tok)
env = "/api/v1/orgs/o/projects/p/environments/e"
for i in range(30):
    req("POST", f"{env}/secrets/S{i:02d}", {"value": "x" * 40}, tok)
req("POST", "/api/v1/orgs/o/service-accounts", {"name": "ci"}, tok)
req("POST", "/api/v1/orgs/o/grants", {"service_account": "ci", "project": "p", "environment": "e", "permissions": ["reveal", "export"]}, tok)
sa = req("POST", "/api/v1/orgs/o/service-accounts/ci/tokens", {}, tok)[1]["data"]["token"]
mode, n = sys.argv[1], int(sys.argv[2])
t = tok if mode.endswith("root") else sa
path = f"{env}/secrets/S01?reveal=true" if mode.startswith("reveal") else f"{env}/inject"
meth = "GET" if mode.startswith("reveal") else "POST"
c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
# warm
for _ in range(50):
    c.request(meth, path, None, {"X-Vault-Token": t}); r = c.getresponse(); r.read()
subprocess.run(["callgrind_control", "-z"], capture_output=True)
for _ in range(n):
    c.request(meth, path, None, {"X-Vault-Token": t}); r = c.getresponse(); r.read(); assert r.status == 200, r.status
subprocess.run(["callgrind_control", "-d"], capture_output=True)
print("done", mode, n)
