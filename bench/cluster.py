#!/usr/bin/env python3
"""cluster.py - inject throughput of one coffer server vs two servers over one
PostgreSQL schema, with the CPU each request costs (coffer and PostgreSQL), so
scaling on bigger machines can be projected. Driven by bench/cluster.sh."""
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["COFFER_BIN"]
PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432/test")
DURATION = os.environ.get("DURATION", "10s")
CONNS = int(os.environ.get("CONNS", "32"))
RUNS = int(os.environ.get("RUNS", "1"))
N_SECRETS = 30
PORTS = (18311, 18312)
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def call(base, method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Vault-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else {})
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def ok(res, what):
    st, body = res
    if st >= 300:
        raise SystemExit(f"{what}: {st} {body}")
    return body


def cpu_s(pids):
    """utime + stime of processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / TICKS


def pg_pids():
    out = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / TICKS


def start(dirpath, name, url, port):
    cfg = os.path.join(dirpath, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(f'[listener]\naddress = "127.0.0.1:{port}"\ntls_disable = true\n[storage]\nurl = "{url}"\n')
    logf = open(os.path.join(dirpath, f"{name}.log"), "w")
    p = subprocess.Popen([BIN, "server", "--config", cfg], stdout=subprocess.DEVNULL, stderr=logf,
                         env={**os.environ, "COFFER_LOG_FORMAT": "text"})
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            call(base, "GET", "/v1/sys/seal-status")
            return p, base
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    raise SystemExit(f"server {name} did not start")


def wrk(base, token, path, conns, threads):
    env = {**os.environ, "TOKEN": token, "INJECT_PATH": path, "LUA_DIR": os.path.join(HERE, "lua")}
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{DURATION}", "--timeout", "5s",
           "-s", os.path.join(HERE, "lua", "coffer_inject.lua"), base]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def result(proc):
    out = proc.communicate()[0]
    m = re.search(r"^RESULT (\{.*\})$", out, re.M)
    if not m:
        raise SystemExit(f"wrk gave no RESULT line:\n{out}")
    r = json.loads(m.group(1))
    if r["err_status"] or r["err_connect"]:
        raise SystemExit(f"wrk errors: {r}")
    return r


def measure(label, targets, servers, token, path):
    """Run wrk against every base in `targets` at once (CONNS split evenly)."""
    pids = [p.pid for p in servers]
    pg = pg_pids()
    c0, p0, m0, t0 = cpu_s(pids), cpu_s(pg), machine_busy_s(), time.time()
    per = max(1, CONNS // len(targets))
    procs = [wrk(b, token, path, per, 1 if len(targets) > 1 else 2) for b in targets]
    res = [result(p) for p in procs]
    c1, p1, m1, t1 = cpu_s(pids), cpu_s(sorted(set(pg) | set(pg_pids()))), machine_busy_s(), time.time()
    reqs = sum(r["requests"] for r in res)
    rps = sum(r["rps"] for r in res)
    fig = {
        "figure": label,
        "servers": len(targets),
        "connections": per * len(targets),
        "injects_per_s": round(rps, 1),
        "p50_ms": round(max(r["p50_ms"] for r in res), 2),
        "p99_ms": round(max(r["p99_ms"] for r in res), 2),
        "coffer_cpu_us_per_inject": round(1e6 * (c1 - c0) / reqs, 1),
        "postgres_cpu_us_per_inject": round(1e6 * (p1 - p0) / reqs, 1),
        "machine_cpu_us_per_inject": round(1e6 * (m1 - m0) / reqs, 1),
        "machine_busy_cores": round((m1 - m0) / (t1 - t0), 2),
        "loadavg_before": os.getloadavg()[0],
    }
    print(json.dumps(fig), flush=True)
    return fig


def main():
    schema = "bench_cluster_" + secrets.token_hex(4)
    subprocess.run(["psql", PG_URL, "-qc", f"CREATE SCHEMA {schema}"], check=True)
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-c%20search_path%3D{schema}"
    tmp = tempfile.mkdtemp(prefix="coffer-cluster-bench-")
    servers = []
    try:
        a, base_a = start(tmp, "a", url, PORTS[0])
        servers.append(a)
        init = ok(call(base_a, "PUT", "/v1/sys/init", {"secret_shares": 3, "secret_threshold": 2}), "init")
        keys, token = init["keys"], init["root_token"]
        for k in keys[:2]:
            ok(call(base_a, "PUT", "/v1/sys/unseal", {"key": k}), "unseal A")
        ok(call(base_a, "POST", "/api/v1/orgs", {"slug": "bench", "name": "Bench"}, token), "org")
        ok(call(base_a, "POST", "/api/v1/orgs/bench/projects", {"slug": "api", "name": "API"}, token), "project")
        ok(call(base_a, "POST", "/api/v1/orgs/bench/projects/api/environments",
                {"slug": "production", "name": "Production"}, token), "env")
        env = "/api/v1/orgs/bench/projects/api/environments/production"
        for i in range(N_SECRETS):
            ok(call(base_a, "POST", f"{env}/secrets/S{i:02d}", {"value": secrets.token_urlsafe(30)}, token), "write")
        b, base_b = start(tmp, "b", url, PORTS[1])
        servers.append(b)
        for k in keys[1:3]:
            ok(call(base_b, "PUT", "/v1/sys/unseal", {"key": k}), "unseal B")
        path = f"{env}/inject"
        for base in (base_a, base_b):
            got = ok(call(base, "POST", path, None, token), "inject")["data"]
            assert len(got) == N_SECRETS, got
        log(f"schema {schema}: 2 servers unsealed, {N_SECRETS} secrets; wrk {DURATION}, {CONNS} connections")
        figs = []
        for run in range(RUNS):
            # B stays up but idle in the one-server figure (its listener and
            # job ticker cost what they cost in production).
            figs.append(measure("one_server", [base_a], servers, token, path))
            figs.append(measure("two_servers", [base_a, base_b], servers, token, path))
        one = [f for f in figs if f["servers"] == 1]
        two = [f for f in figs if f["servers"] == 2]
        med = lambda fs, k: sorted(f[k] for f in fs)[len(fs) // 2]  # noqa: E731
        summary = {
            "figure": "scaling",
            "one_server_injects_per_s": med(one, "injects_per_s"),
            "two_servers_injects_per_s": med(two, "injects_per_s"),
            "ratio": round(med(two, "injects_per_s") / med(one, "injects_per_s"), 2),
            "machine_cpu_us_per_inject_two": med(two, "machine_cpu_us_per_inject"),
        }
        print(json.dumps(summary), flush=True)
    finally:
        for p in servers:
            p.terminate()
            p.wait()
        subprocess.run(["psql", PG_URL, "-qc", f"SET client_min_messages = warning; DROP SCHEMA {schema} CASCADE"], check=False)


if __name__ == "__main__":
    main()
