#!/usr/bin/env python3
"""Dashboard budgets (issue 16): transfer size of the login page with its
assets, and server time of every dashboard page of an environment with
1,000 secrets, on a `coffer server --dev` (root logs in with its token).

    bench/dashboard_budget.py [COFFER_BIN]     # default target/release/coffer

Prints one line per page: bytes and min/median/max wall time over RUNS (10)
requests on localhost (plain HTTP, so the time is the server's plus a
loopback round trip). Standard library only.
"""
import http.cookiejar, json, os, re, statistics, subprocess, sys, time, urllib.parse, urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/coffer"
RUNS = int(os.environ.get("RUNS", "10"))
ADDR = os.environ.get("ADDR", "127.0.0.1:8291")
BASE = f"http://{ADDR}"
N = int(os.environ.get("SECRETS", "1000"))

srv = subprocess.Popen([BIN, "server", "--dev", "--dev-listen-address", ADDR],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
token = None
deadline = time.time() + 30
for line in srv.stdout:
    m = re.search(r"(cfr_[A-Za-z0-9_\-]+)", line)
    if m and token is None:
        token = m.group(1)
    if token and "listening" in line:
        break
    if time.time() > deadline:
        sys.exit("the dev server did not start")
if token is None:
    sys.exit("no root token in the dev server's output")

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None

jar = http.cookiejar.CookieJar()
ui = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)

def api(method, path, body=None):
    req = urllib.request.Request(BASE + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"X-Vault-Token": token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.read()

def fetch(method, path, form=None):
    data = None if form is None else urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(BASE + path, method=method, data=data)
    if data:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    t = time.perf_counter()
    try:
        with ui.open(req) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        if e.code >= 400:
            sys.exit(f"{method} {path}: {e.code} {body[:200]!r}")
    return time.perf_counter() - t, body

try:
    env = "/api/v1/orgs/default/projects/default/environments/dev"
    lines = []
    for i in range(N):
        api("PUT", f"{env}/secrets/KEY_{i:04}", {"value": f"value-{i:04}-" + "x" * 30})
        lines.append(f"KEY_{i:04}=value-{i:04}-" + ("y" if i % 2 else "x") * 30)
    _, login = fetch("GET", "/ui/login")
    assets = re.findall(r'(?:src|href)="(/ui/assets/[^"]+)"', login.decode())
    size = len(login) + sum(len(fetch("GET", a)[1]) for a in assets)
    print(f"login page with its assets: {size / 1024:.1f} KiB uncompressed")
    _, page = fetch("GET", "/ui/login/token")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.decode()).group(1)
    fetch("POST", "/ui/login/token", {"csrf": csrf, "token": token})
    e = "/ui/orgs/default/projects/default/envs/dev"
    _, page = fetch("GET", e)
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.decode()).group(1)
    dotenv = "\n".join(lines)
    pages = [
        ("organizations", "GET", "/ui/orgs", None),
        ("environments", "GET", "/ui/orgs/default/projects/default", None),
        (f"secrets ({N})", "GET", e, None),
        ("edit", "GET", f"{e}/secrets/KEY_0001/edit", None),
        ("history", "GET", f"{e}/secrets/KEY_0001/history", None),
        (f"import plan ({N} lines)", "POST", f"{e}/import", {"csrf": csrf, "format": "env", "content": dotenv}),
        (f"export ({N} values)", "POST", f"{e}/export", {"csrf": csrf, "format": "env"}),
        ("access", "GET", "/ui/orgs/default/access", None),
        ("grants", "GET", f"{e}/grants", None),
        ("account", "GET", "/ui/account", None),
        ("audit", "GET", "/ui/audit", None),
        ("server", "GET", "/ui/server", None),
    ]
    for name, method, path, form in pages:
        times, size = [], 0
        for _ in range(RUNS):
            t, body = fetch(method, path, form)
            times.append(t * 1000)
            size = len(body)
        print(f"{name:24} {size / 1024:8.1f} KiB  {min(times):6.1f} / {statistics.median(times):6.1f} / {max(times):6.1f} ms")
finally:
    srv.terminate()
    srv.wait()
