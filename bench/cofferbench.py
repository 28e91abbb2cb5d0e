#!/usr/bin/env python3
"""cofferbench.py - the driver behind bench/run.sh and bench/compare.sh.

    python3 bench/cofferbench.py run        # coffer alone: load + lifecycle
    python3 bench/cofferbench.py compare    # coffer and OpenBao alternated
    python3 bench/cofferbench.py profile    # strace -c + perf profile per workload
    python3 bench/cofferbench.py memory     # RSS idle and after load, by kind
    python3 bench/cofferbench.py vault [--check]   # the performance issue's table vs OpenBao
    python3 bench/cofferbench.py summarize DIR   # re-render DIR/runs.jsonl

Only the Python standard library, wrk and (for BACKEND=postgres) psql. Every
process it starts is stopped by its PID; nothing else is signalled.
All knobs are environment variables (see bench/run.sh and bench/compare.sh).

Outputs in $OUT: runs.jsonl (one line per wrk run / lifecycle start),
figures.jsonl (one line per figure: median, min, max, target, pass),
summary.md (markdown tables), server logs, init.json (BENCHMARK SHARES AND
ROOT TOKEN IN CLEAR: throw-away store only).
"""
import http.client
import json
import os
import re
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LUA_DIR = os.path.join(HERE, "lua")


def env(name, default):
    v = os.environ.get(name)
    return default if v is None or v == "" else v


BACKEND = env("BACKEND", "sqlite")
PG_URL = env("PG_URL", "postgres://postgres@127.0.0.1:5432/test")
DURATION = env("DURATION", "10s")
RUNS = int(env("RUNS", "3"))
CONNS = [int(c) for c in env("CONNS", "8 32").split()]
THREADS = int(env("THREADS", "2"))
SERVER_CPUS = env("SERVER_CPUS", "0")
WRK_CPUS = env("WRK_CPUS", "1")
# "none": not pinned (an empty value means the default)
SERVER_CPUS, WRK_CPUS = ("" if v == "none" else v for v in (SERVER_CPUS, WRK_CPUS))
LIFECYCLE_CPUS = os.environ.get("LIFECYCLE_CPUS", "")  # empty: lifecycle starts unpinned
N_SECRETS = int(env("N_SECRETS", "30"))
STARTS = int(env("STARTS", "10"))
UNSEAL_RUNS = int(env("UNSEAL_RUNS", "5"))
SETTLE_S = float(env("SETTLE_S", "3"))
WARMUP = env("WARMUP", "3s")
WAIT_QUIET = env("WAIT_QUIET", "1") == "1"
QUIET_LOAD = float(env("QUIET_LOAD", "0.6"))
QUIET_BUDGET_S = float(env("QUIET_BUDGET_S", "2400"))
COOLDOWN_POLL_S = float(env("COOLDOWN_POLL_S", "5"))
BUSY_POLL_S = float(env("BUSY_POLL_S", "60"))
DISABLE_MLOCK = env("DISABLE_MLOCK", "0") == "1"
LOAD = env("LOAD", "1") == "1"
LIFECYCLE = env("LIFECYCLE", "1") == "1"
WORKLOADS = env("WORKLOADS", "reveal inject").split()
TOKEN_KIND = env("TOKEN_KIND", "root")  # root | sa: load with a scoped service-account token
COFFER_BIN = env("COFFER_BIN", os.path.join(ROOT, "target", "release", "coffer"))
WRK = env("WRK", "wrk")
OUT = os.path.abspath(env("OUT", os.path.join(ROOT, "target", "bench", time.strftime("%Y%m%d-%H%M%S"))))
ORG, PROJECT, ENVIRONMENT = "o", "p", "e"
REVEAL_KEY = "S01"

TARGETS = {  # figure -> (field, op, limit, text)
    "reveal_c8": ("server_cpu_us_per_req", "<=", 100, "server CPU ≤ 100 µs/reveal"),
    "reveal_c32": ("server_cpu_us_per_req", "<=", 100, "server CPU ≤ 100 µs/reveal"),
    "inject_c32": ("p99_ms", "<", 5, "p99 < 5 ms at 32 connections"),
    "start_to_sealed_health": ("ms", "<", 50, "< 50 ms"),
    "last_share_to_first_read": ("ms", "<", 10, "< 10 ms"),
    "rss_unsealed_idle": ("MiB", "<", 30, "< 30 MiB"),
}

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print("#", *a, file=sys.stderr, flush=True)


# --- machine state ---------------------------------------------------------

class Quiet:
    """The measurement rule: 1-min load < QUIET_LOAD and no rustc before each
    run. Waits (short polls while only the load is high, BUSY_POLL_S while a
    compiler runs) within a total budget, then measures anyway and says so."""

    def __init__(self):
        # QUIET_BUDGET_FILE: share one budget between several invocations
        self.file = os.environ.get("QUIET_BUDGET_FILE")
        self.waited = 0.0
        if self.file and os.path.exists(self.file):
            with open(self.file) as f:
                self.waited = float(f.read().strip() or 0)
        self.exhausted = False
        self.loaded_runs = 0

    @staticmethod
    def state():
        with open("/proc/loadavg") as f:
            load1 = float(f.read().split()[0])
        r = subprocess.run(["pgrep", "-f", "rustc"], capture_output=True, text=True)
        return load1, [p for p in r.stdout.split() if p.strip()]

    def wait(self, what):
        while True:
            load1, rustc = self.state()
            if load1 < QUIET_LOAD and not rustc:
                return {"load1": load1, "rustc": 0, "quiet": True}
            if not WAIT_QUIET or self.exhausted:
                self.loaded_runs += 1
                return {"load1": load1, "rustc": len(rustc), "quiet": False}
            if self.waited >= QUIET_BUDGET_S:
                log(f"quiet-wait budget of {QUIET_BUDGET_S:.0f} s used up: measuring on a loaded machine")
                self.exhausted = True
                continue
            step = BUSY_POLL_S if rustc else COOLDOWN_POLL_S
            log(f"before {what}: load1 {load1:.2f}, rustc processes {len(rustc)}: waiting {step:.0f} s "
                f"(waited {self.waited:.0f}/{QUIET_BUDGET_S:.0f} s)")
            time.sleep(step)
            self.waited += step
            if self.file:
                with open(self.file, "w") as f:
                    f.write(str(self.waited))


QUIET = Quiet()


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK  # utime + stime, all threads


def status_kb(pid):
    d = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "VmLck", "RssAnon", "RssFile", "Threads"):
                d[k] = int(v.split()[0])
    return d


def postgres_cpu_s():
    """utime+stime of every process called `postgres` (the DB's side of a
    request; includes other users of the same PostgreSQL)."""
    total = 0.0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            total += proc_cpu_s(p)
        except OSError:
            pass
    return total


def sys_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return busy, sum(v[:8]), v[7]


def cpus(spec):
    out = set()
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        elif part:
            out.add(int(part))
    return out


# --- HTTP ------------------------------------------------------------------

def req(addr, method, path, body=None, token=None, timeout=10):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        h = {}
        if token:
            h["X-Vault-Token"] = token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def expect(codes, addr, method, path, body=None, token=None):
    s, b = req(addr, method, path, body, token)
    if s not in codes:
        raise RuntimeError(f"{method} {path} -> HTTP {s}: {b[:300]!r}")
    return json.loads(b) if b else None


def poll(fn, timeout=30.0, interval=0.0005):
    t0 = time.monotonic()
    while True:
        try:
            v = fn()
        except (ConnectionError, OSError, http.client.HTTPException):
            v = None
        if v is not None:
            return v
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("poll timeout")
        time.sleep(interval)


def rnd40():
    return secrets.token_urlsafe(30)[:40]


# --- coffer server -----------------------------------------------------------

class Store:
    """A fresh SQLite file or a fresh PostgreSQL schema."""

    def __init__(self, out):
        self.schema = None
        if BACKEND == "sqlite":
            d = os.path.join(out, "data")
            os.makedirs(d, exist_ok=True)
            self.url = "sqlite://" + os.path.join(d, "coffer.db")
        elif BACKEND == "postgres":
            self.schema = "bench_" + secrets.token_hex(4)
            self.psql(f"CREATE SCHEMA {self.schema}")
            sep = "&" if "?" in PG_URL else "?"
            self.url = f"{PG_URL}{sep}options=-c%20search_path%3D{self.schema}"
        else:
            sys.exit(f"BACKEND must be sqlite or postgres, not {BACKEND!r}")

    @staticmethod
    def psql(sql):
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", PG_URL, "-c", sql], check=True,
                       stdout=subprocess.DEVNULL)

    def drop(self):
        if self.schema and env("KEEP_SCHEMA", "0") != "1":
            try:
                self.psql(f"DROP SCHEMA {self.schema} CASCADE")
            except subprocess.CalledProcessError as e:
                log(f"could not drop schema {self.schema}: {e}")


class Coffer:
    """One `coffer server` process; addr from its `coffer: listening on` line."""

    def __init__(self, out, store):
        self.out = out
        self.cfg = os.path.join(out, "coffer.toml")
        with open(self.cfg, "w") as f:
            f.write(f'disable_mlock = {"true" if DISABLE_MLOCK else "false"}\n'
                    '[listener]\naddress = "127.0.0.1:0"\ntls_disable = true\n'
                    f'[storage]\nurl = "{store.url}"\n'
                    + ('[audit]\nenabled = false\n' if os.environ.get("AUDIT", "on") == "off" else ''))
        self.p = None
        self.addr = None
        self.logf = None

    def start(self, cpu_spec):
        """Start; return (seconds from spawn to the first answer of
        /v1/sys/health, that answer's HTTP code)."""
        self.logf = open(os.path.join(self.out, "server.log"), "ab")
        pin = cpus(cpu_spec) if cpu_spec else None
        t0 = time.monotonic()
        self.p = subprocess.Popen(
            [COFFER_BIN, "server", "--config", self.cfg], stdout=subprocess.PIPE, stderr=self.logf,
            stdin=subprocess.DEVNULL, env=dict(os.environ, COFFER_LOG_FORMAT="json"),
            preexec_fn=(lambda: os.sched_setaffinity(0, pin)) if pin else None)
        line = b""
        deadline = t0 + 60
        while not line.endswith(b"\n"):
            r, _, _ = select.select([self.p.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                raise TimeoutError("no 'listening on' line within 60 s")
            ch = os.read(self.p.stdout.fileno(), 4096)
            if not ch:
                raise RuntimeError(f"coffer exited early (code {self.p.wait()}); see {self.out}/server.log")
            line += ch
        m = re.search(rb"coffer: listening on http://(\S+)", line)
        if not m:
            raise RuntimeError(f"unexpected stdout: {line!r}")
        self.addr = m.group(1).decode()

        def health():
            s, _ = req(self.addr, "GET", "/v1/sys/health", timeout=2)
            return s
        code = poll(health)
        return time.monotonic() - t0, code

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.p and self.p.stdout:
            self.p.stdout.close()
        if self.logf:
            self.logf.close()
        self.p = None

    @property
    def pid(self):
        return self.p.pid

    def env_path(self):
        return f"/api/v1/orgs/{ORG}/projects/{PROJECT}/environments/{ENVIRONMENT}"


def coffer_setup(c):
    """init 5/3, unseal, org/project/env, N_SECRETS secrets. Returns init JSON."""
    t = time.monotonic()
    init = expect({200}, c.addr, "PUT", "/v1/sys/init", {"secret_shares": 5, "secret_threshold": 3})
    log(f"coffer init 5/3 in {1000 * (time.monotonic() - t):.0f} ms")
    old = os.umask(0o077)
    with open(os.path.join(c.out, "init.json"), "w") as f:
        json.dump(init, f)
    os.umask(old)
    for k in init["keys_base64"][:3]:
        st = expect({200}, c.addr, "PUT", "/v1/sys/unseal", {"key": k})
    assert st["sealed"] is False, st
    tok = init["root_token"]
    expect({200, 201}, c.addr, "POST", "/api/v1/orgs", {"slug": ORG, "name": "Bench org"}, tok)
    expect({200, 201}, c.addr, "POST", f"/api/v1/orgs/{ORG}/projects", {"slug": PROJECT, "name": "Bench"}, tok)
    expect({200, 201}, c.addr, "POST", f"/api/v1/orgs/{ORG}/projects/{PROJECT}/environments",
           {"slug": ENVIRONMENT, "name": "Bench env", "protected": False}, tok)
    for i in range(1, N_SECRETS + 1):
        expect({200, 201}, c.addr, "POST", f"{c.env_path()}/secrets/S{i:02d}",
               {"value": rnd40(), "type": "text", "description": "bench"}, tok)
    got = expect({200}, c.addr, "POST", f"{c.env_path()}/inject", None, tok)["data"]
    assert len(got) == N_SECRETS, f"inject returned {len(got)} secrets, want {N_SECRETS}"
    got = expect({200}, c.addr, "GET", f"{c.env_path()}/secrets/{REVEAL_KEY}?reveal=true", None, tok)["data"]
    assert len(got.get("value", "")) == 40, got.keys()
    log(f"seeded {N_SECRETS} secrets in {ORG}/{PROJECT}/{ENVIRONMENT}; inject and reveal answer")
    # A CI-style service account scoped to this one environment (reveal + export).
    expect({200}, c.addr, "POST", f"/api/v1/orgs/{ORG}/service-accounts", {"name": "bench-ci"}, tok)
    expect({200}, c.addr, "POST", f"/api/v1/orgs/{ORG}/grants",
           {"service_account": "bench-ci", "project": PROJECT, "environment": ENVIRONMENT,
            "permissions": ["reveal", "export"]}, tok)
    init["sa_token"] = expect({200}, c.addr, "POST", f"/api/v1/orgs/{ORG}/service-accounts/bench-ci/tokens",
                              {}, tok)["data"]["token"]
    got = expect({200}, c.addr, "POST", f"{c.env_path()}/inject", None, init["sa_token"])["data"]
    assert len(got) == N_SECRETS, "the service-account token injects the environment"
    return init


# --- wrk ---------------------------------------------------------------------

def run_wrk(system, workload, conns, threads, script, url, server_pid, extra_env, out, run, db_cpu=False,
            allow_errors=False):
    q = QUIET.wait(f"{system} {workload} c{conns} run {run}")
    raw = os.path.join(out, f"{system}_{workload}_c{conns}_run{run}.txt")
    e = dict(os.environ, LUA_DIR=LUA_DIR, **extra_env)
    cmd = ["taskset", "-c", WRK_CPUS] if WRK_CPUS else []
    cmd += [WRK, "-t", str(threads), "-c", str(conns), "-d", DURATION, "--timeout", "10s",
            "-s", os.path.join(LUA_DIR, script), url]
    c0, b0 = proc_cpu_s(server_pid), sys_busy()
    d0 = postgres_cpu_s() if db_cpu else 0.0
    with open(raw, "w") as f:
        subprocess.run(cmd, env=e, stdout=f, stderr=subprocess.STDOUT, check=True)
    c1, b1 = proc_cpu_s(server_pid), sys_busy()
    d1 = postgres_cpu_s() if db_cpu else 0.0
    res = None
    with open(raw) as f:
        for line in f:
            if line.startswith("RESULT "):
                res = json.loads(line[7:])
    if res is None:
        raise RuntimeError(f"no RESULT line in {raw}")
    r = {"kind": "wrk", "system": system, "backend": BACKEND if system == "coffer" else "raft",
         "workload": workload, "figure": f"{workload}_c{conns}", "conns": conns, "threads": threads,
         "run": run, **res, **q,
         "server_cpu_s": round(c1 - c0, 3),
         "system_cpu_busy_pct": round(100 * (b1[0] - b0[0]) / max(1, b1[1] - b0[1]), 1),
         "steal_pct": round(100 * (b1[2] - b0[2]) / max(1, b1[1] - b0[1]), 2)}
    if res["requests"]:
        r["server_cpu_us_per_req"] = round(1e6 * (c1 - c0) / res["requests"], 1)
        if db_cpu:
            r["postgres_cpu_us_per_req"] = round(1e6 * (d1 - d0) / res["requests"], 1)
    if res.get("injects"):
        r["server_cpu_us_per_inject"] = round(1e6 * (c1 - c0) / res["injects"], 1)
    r.update({"server_" + k: v for k, v in status_kb(server_pid).items() if k in ("VmRSS", "VmHWM")})
    extra = ""
    if "injects" in r:
        extra = f" | {r['injects_per_s']:.1f} injects/s, inject p50 {r['inject_p50_ms']:.2f} ms p99 {r['inject_p99_ms']:.2f} ms"
    log(f"{system} {workload} c{conns} run {run}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
        f"p99 {r['p99_ms']:.2f} ms, {r.get('server_cpu_us_per_req', 0):.0f} µs server CPU/req{extra}"
        f" | non-2xx {r['err_status']}, socket errors "
        f"{r['err_connect'] + r['err_read'] + r['err_write'] + r['err_timeout']}, load1 {q['load1']:.2f}")
    r["failed"] = (r["err_status"] + r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
                   + r.get("inject_failed", 0))
    if (r["err_status"] or r.get("inject_failed")) and not allow_errors:
        raise RuntimeError(f"{raw}: {r['err_status']} non-2xx answers / failed injects")
    append(out, "runs.jsonl", r)
    time.sleep(1)
    return r


def append(out, name, obj):
    with open(os.path.join(out, name), "a") as f:
        f.write(json.dumps(obj) + "\n")


def warmup(script, url, extra_env):
    cmd = (["taskset", "-c", WRK_CPUS] if WRK_CPUS else []) + [
        WRK, "-t", "2", "-c", "8", "-d", WARMUP, "-s", os.path.join(LUA_DIR, script), url]
    subprocess.run(cmd, env=dict(os.environ, LUA_DIR=LUA_DIR, **extra_env), stdout=subprocess.DEVNULL, check=True)


def coffer_workloads(c, tok):
    base = f"http://{c.addr}"
    wl = {
        "reveal": ("coffer_reveal.lua", {"TOKEN": tok, "REVEAL_PATH": f"{c.env_path()}/secrets/{REVEAL_KEY}?reveal=true"}),
        "inject": ("coffer_inject.lua", {"TOKEN": tok, "INJECT_PATH": f"{c.env_path()}/inject"}),
        # writes need a token that may create and update: run with TOKEN_KIND=root
        "write_one": ("coffer_kv_post.lua", {"TOKEN": tok, "WRITE_PATH": f"/v1/secret/data/{ORG}/{PROJECT}/{ENVIRONMENT}/W", "SPREAD": "1"}),
        "write_spread": ("coffer_kv_post.lua", {"TOKEN": tok, "WRITE_PATH": f"/v1/secret/data/{ORG}/{PROJECT}/{ENVIRONMENT}/W", "SPREAD": "64"}),
    }
    return base, wl


# --- lifecycle ---------------------------------------------------------------

def coffer_lifecycle(out, store, init, runs_file="runs.jsonl"):
    """STARTS starts of an initialized store: spawn -> first /v1/sys/health
    answer (503 sealed). On the first UNSEAL_RUNS of them also: RSS sealed
    idle, last (3rd) share -> first 200 reveal, RSS unsealed idle."""
    QUIET.wait("lifecycle")
    tok, keys = init["root_token"], init["keys_base64"]
    rows = []
    for i in range(1, STARTS + 1):
        c = Coffer(out, store)
        try:
            dt, code = c.start(LIFECYCLE_CPUS)
            r = {"kind": "lifecycle", "system": "coffer", "backend": BACKEND, "start": i,
                 "start_to_health_ms": round(1000 * dt, 2), "health_code": code}
            if code != 503:
                raise RuntimeError(f"health answered {code} on an initialized store (want 503 sealed)")
            if i <= UNSEAL_RUNS:
                time.sleep(SETTLE_S)
                r["mem_sealed_idle"] = status_kb(c.pid)
                for k in keys[:2]:
                    expect({200}, c.addr, "PUT", "/v1/sys/unseal", {"key": k})
                reveal = f"{c.env_path()}/secrets/{REVEAL_KEY}?reveal=true"

                def ok():
                    s, _ = req(c.addr, "GET", reveal, token=tok, timeout=2)
                    return s if s == 200 else None
                t = time.monotonic()
                s, b = req(c.addr, "PUT", "/v1/sys/unseal", {"key": keys[2]})
                t_call = time.monotonic() - t
                assert s == 200 and json.loads(b)["sealed"] is False, (s, b[:200])
                poll(ok, timeout=10)
                r["last_share_to_read_ms"] = round(1000 * (time.monotonic() - t), 2)
                r["last_share_call_ms"] = round(1000 * t_call, 2)
                time.sleep(SETTLE_S)
                r["mem_unsealed_idle"] = status_kb(c.pid)
        finally:
            c.stop()
        rows.append(r)
        append(out, runs_file, r)
        log(f"coffer start {i}: health {r['health_code']} after {r['start_to_health_ms']:.1f} ms"
            + (f"; last share -> 200 reveal {r['last_share_to_read_ms']:.1f} ms, RSS sealed "
               f"{r['mem_sealed_idle']['VmRSS']} kB, unsealed {r['mem_unsealed_idle']['VmRSS']} kB, "
               f"VmLck {r['mem_unsealed_idle']['VmLck']} kB" if "mem_unsealed_idle" in r else ""))
    return rows


# --- summaries ---------------------------------------------------------------

def agg(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3),
            "max": round(max(vals), 3), "n": len(vals)}


def fmt(a, f="%.0f"):
    if not a:
        return "-"
    return (f % a["median"]) + " (" + (f % a["min"]) + "–" + (f % a["max"]) + ")"


def judge(figure, a):
    t = TARGETS.get(figure)
    if not t or not a:
        return None, None
    field, op, limit, text = t
    v = a["median"]
    ok = v <= limit if op == "<=" else v < limit
    return text, ok


def summarize(out, title):
    rows = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl")) if l.strip()]
    figures = []
    # wrk figures, grouped by (system, backend, figure)
    order = []
    for r in rows:
        if r["kind"] == "wrk" and (r["system"], r["backend"], r["figure"]) not in order:
            order.append((r["system"], r["backend"], r["figure"]))
    for sysname, be, fig in order:
        rs = [r for r in rows if r["kind"] == "wrk" and (r["system"], r["backend"], r["figure"]) == (sysname, be, fig)]
        f = {"figure": fig, "system": sysname, "backend": be, "conns": rs[0]["conns"], "threads": rs[0]["threads"],
             "runs": len(rs), "quiet_runs": sum(1 for r in rs if r["quiet"]),
             "load1_max": max(r["load1"] for r in rs)}
        for k in ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_req", "postgres_cpu_us_per_req",
                  "injects_per_s", "inject_p50_ms", "inject_p99_ms", "server_cpu_us_per_inject",
                  "system_cpu_busy_pct", "steal_pct"):
            a = agg([r.get(k) for r in rs])
            if a:
                f[k] = a
        f["server_VmRSS_kb_after"] = rs[-1].get("server_VmRSS")
        f["server_VmHWM_kb_after"] = rs[-1].get("server_VmHWM")
        if sysname == "coffer":
            f["target"], f["pass"] = judge(fig, f.get(TARGETS.get(fig, ("x",))[0]))
        figures.append(f)
    lc = [r for r in rows if r["kind"] == "lifecycle" and r["system"] == "coffer"]
    if lc:
        def add(fig, vals, unit, **kw):
            a = agg(vals)
            f = {"figure": fig, "system": "coffer", "backend": lc[0]["backend"], "unit": unit, unit: a, **kw}
            f["target"], f["pass"] = judge(fig, a)
            figures.append(f)
        add("start_to_sealed_health", [r["start_to_health_ms"] for r in lc], "ms")
        add("last_share_to_first_read", [r.get("last_share_to_read_ms") for r in lc], "ms")
        add("last_share_unseal_call", [r.get("last_share_call_ms") for r in lc], "ms")
        for state in ("sealed", "unsealed"):
            m = [r[f"mem_{state}_idle"] for r in lc if f"mem_{state}_idle" in r]
            if m:
                add(f"rss_{state}_idle", [x["VmRSS"] / 1024 for x in m], "MiB",
                    VmLck_kb=agg([x["VmLck"] for x in m]), RssAnon_kb=agg([x["RssAnon"] for x in m]),
                    RssFile_kb=agg([x["RssFile"] for x in m]), Threads=agg([x["Threads"] for x in m]))
    bao = [r for r in rows if r["kind"] == "bao_lifecycle"]
    if bao:
        s = bao[0]["summary"]
        def bget(k):
            return s.get(k)
        for fig, k, unit, scale in (
                ("start_to_sealed_health", "E_restart_to_health_ms", "ms", 1),
                ("last_share_to_first_read", "F_restart_unseal_key3_to_kv_read_ms", "ms", 1),
                ("rss_sealed_idle", "mem_initialized_sealed.VmRSS", "MiB", 1 / 1024),
                ("rss_unsealed_idle", "mem_unsealed_idle.VmRSS", "MiB", 1 / 1024)):
            a = bget(k)
            if a:
                a = {x: round(a[x] * scale, 3) for x in ("median", "min", "max")}
                a["n"] = len(bao[0]["runs"])
                f = {"figure": fig, "system": "openbao", "backend": "raft", "unit": unit, unit: a}
                if fig.startswith("rss"):
                    f["VmLck_kb"] = bget(k.replace("VmRSS", "VmLck"))
                figures.append(f)
    with open(os.path.join(out, "figures.jsonl"), "w") as fo:
        for f in figures:
            fo.write(json.dumps(f) + "\n")
    bj = os.path.join(out, "build.json")
    if os.path.exists(bj):
        b = json.load(open(bj))
        title += f" — coffer {b['head'][:7]} ({b['head_subject']}){' + uncommitted changes' if b['dirty'] else ''}"
    md = render(figures, title, rows)
    with open(os.path.join(out, "summary.md"), "w") as fo:
        fo.write(md)
    print(md)
    print()
    for f in figures:
        print(json.dumps(f))
    return figures


def side_by_side(wrk):
    """One row per (task, conns): what a client gets and what it costs the server."""
    def find(sysname, fig):
        return next((f for f in wrk if f["system"] == sysname and f["figure"] == fig), None)
    lines = ["Side by side (one *operation* = one secret read, or one inject of all "
             f"{N_SECRETS} secrets; OpenBao LIST + {N_SECRETS} GET = {N_SECRETS + 1} requests per inject "
             "on one keep-alive connection per client):", "",
             "| operation | conns | system | operations/s | p50 ms | p99 ms | server CPU µs/operation |",
             "|---|---|---|---|---|---|---|"]
    tasks = [("read one secret", [("coffer", "reveal", "coffer reveal"), ("openbao", "kv_get", "OpenBao KV v2 GET")]),
             (f"inject {N_SECRETS} secrets", [("coffer", "inject", "coffer inject"),
                                              ("openbao", "kv_inject_list", f"OpenBao LIST + {N_SECRETS} GET"),
                                              ("openbao", "kv_inject_bundle", f"OpenBao GET of a {N_SECRETS}-field entry")])]
    for task, members in tasks:
        for n in CONNS:
            for sysname, w, label in members:
                f = find(sysname, f"{w}_c{n}")
                if not f:
                    continue
                if "injects_per_s" in f:
                    ops, p50, p99, cpu = (f["injects_per_s"], f["inject_p50_ms"], f["inject_p99_ms"],
                                          f.get("server_cpu_us_per_inject"))
                else:
                    ops, p50, p99, cpu = f["rps"], f["p50_ms"], f["p99_ms"], f.get("server_cpu_us_per_req")
                lines.append(f"| {task} | {n} | {label} | {fmt(ops)} | {fmt(p50, '%.2f')} | {fmt(p99, '%.2f')} | "
                             f"{fmt(cpu)} |")
    return lines + [""]


def render(figures, title, rows):
    lines = [f"### {title}", ""]
    wrk = [f for f in figures if "rps" in f]
    if wrk:
        lines += ["| system | figure | conns | req/s | p50 ms | p99 ms | server CPU µs/req | target | pass |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for f in wrk:
            cpu = fmt(f.get("server_cpu_us_per_req"))
            if f.get("postgres_cpu_us_per_req"):
                cpu += " + PG " + fmt(f["postgres_cpu_us_per_req"])
            name = f["system"] + ("" if f["system"] != "coffer" else f" ({f['backend']})")
            lines.append(f"| {name} | {f['figure']} | {f['conns']} | {fmt(f['rps'])} | {fmt(f['p50_ms'], '%.2f')} | "
                         f"{fmt(f['p99_ms'], '%.2f')} | {cpu} | {f.get('target') or ''} | "
                         f"{'' if f.get('pass') is None else ('yes' if f['pass'] else '**no**')} |")
        lines.append("")
        if any(f["system"] == "openbao" for f in wrk):
            lines += side_by_side(wrk)
    lcs = [f for f in figures if "unit" in f]
    if lcs:
        lines += ["| system | figure | value | target | pass |", "|---|---|---|---|---|"]
        for f in lcs:
            u = f["unit"]
            v = fmt(f[u], "%.1f") + " " + u
            if "VmLck_kb" in f and f["VmLck_kb"]:
                v += f", VmLck {fmt(f['VmLck_kb'])} kB"
            lines.append(f"| {f['system']} | {f['figure']} | {v} | {f.get('target') or ''} | "
                         f"{'' if f.get('pass') is None else ('yes' if f['pass'] else '**no**')} |")
        lines.append("")
    wr = [r for r in rows if r["kind"] == "wrk"]
    loaded = [r for r in wr if not r["quiet"]]
    lines.append(f"Median (min–max) over runs. {len(wr)} wrk runs of {DURATION}, server pinned to cpu "
                 f"{SERVER_CPUS}, wrk to cpu {WRK_CPUS}. Quiet-machine rule (1-min load < {QUIET_LOAD}, no rustc) "
                 + ("held before every run." if not loaded else
                    f"**not met before {len(loaded)} run(s)** (max load1 {max(r['load1'] for r in loaded):.2f}): "
                    "the machine was loaded."))
    return "\n".join(lines) + "\n"


# --- modes -------------------------------------------------------------------

def snapshot_binary():
    """Run a private copy of the binary: the shared target/ may be rebuilt by
    someone else mid-run. Records what was measured in $OUT/build.json."""
    global COFFER_BIN
    dst = os.path.join(OUT, "coffer")
    if os.path.abspath(COFFER_BIN) != dst:
        shutil.copy2(COFFER_BIN, dst)
    import hashlib
    with open(dst, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    def git(*a):
        r = subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True)
        return r.stdout.strip()
    info = {"binary": COFFER_BIN, "sha256": sha,
            "built": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(os.path.getmtime(COFFER_BIN))),
            "head": git("rev-parse", "HEAD"), "head_subject": git("log", "-1", "--format=%s"),
            "dirty": git("status", "--short", "--", "src", "migrations", "unseal", "Cargo.toml", "Cargo.lock")}
    with open(os.path.join(OUT, "build.json"), "w") as f:
        json.dump(info, f, indent=1)
    log(f"measuring {COFFER_BIN} (sha256 {sha[:12]}, built {info['built']}); HEAD {info['head'][:7]} "
        f"{info['head_subject']!r}" + (f"; uncommitted: {info['dirty']!r}" if info["dirty"] else ""))
    COFFER_BIN = dst


def mode_run():
    os.makedirs(OUT, exist_ok=True)
    snapshot_binary()
    log(f"results in {OUT}; backend {BACKEND}; binary {COFFER_BIN}")
    store = Store(OUT)
    c = Coffer(OUT, store)
    try:
        _, code = c.start(SERVER_CPUS)
        assert code == 501, f"fresh store: health {code}, want 501"
        init = coffer_setup(c)
        tok = init["sa_token"] if TOKEN_KIND == "sa" else init["root_token"]
        log(f"load token: {TOKEN_KIND}")
        if LOAD:
            base, wl = coffer_workloads(c, tok)
            for w in WORKLOADS:
                warmup(wl[w][0], base, wl[w][1])
            for run in range(1, RUNS + 1):
                for w in WORKLOADS:
                    for n in CONNS:
                        run_wrk("coffer", w, n, THREADS, wl[w][0], base, c.pid, wl[w][1], OUT, run,
                                db_cpu=BACKEND == "postgres")
        c.stop()
        if LIFECYCLE:
            coffer_lifecycle(OUT, store, init)
    finally:
        c.stop()
        store.drop()
    summarize(OUT, f"coffer ({BACKEND}), {time.strftime('%Y-%m-%d %H:%M')}")


def parse_exports(text):
    env_ = {}
    for line in text.splitlines():
        m = re.match(r"export (\w+)='(.*)'$", line)
        if m:
            env_[m.group(1)] = m.group(2)
    return env_


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def mode_compare():
    kit = env("KIT", "/work/shared/anchors/openbao")
    bao_bin = os.environ["BAO_BIN"]
    os.makedirs(OUT, exist_ok=True)
    snapshot_binary()
    log(f"results in {OUT}; coffer backend {BACKEND}; bao {bao_bin}")
    store = Store(OUT)
    c = Coffer(OUT, store)
    bao_work = os.path.join(OUT, "openbao")
    os.makedirs(bao_work, exist_ok=True)
    bao_env = None
    bao_listen = f"127.0.0.1:{free_port()}"
    bao_cluster = f"127.0.0.1:{free_port()}"
    try:
        _, code = c.start(SERVER_CPUS)
        init = coffer_setup(c)
        tok = init["root_token"]
        cbase, cwl = coffer_workloads(c, tok)

        r = subprocess.run([os.path.join(kit, "start.sh")], capture_output=True, text=True,
                           env=dict(os.environ, WORK=bao_work, BAO_BIN=bao_bin, FRESH="1", BAO_CPUS=SERVER_CPUS,
                                    BAO_LISTEN=bao_listen, BAO_CLUSTER=bao_cluster))
        with open(os.path.join(bao_work, "start.stderr"), "w") as f:
            f.write(r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"openbao start.sh failed:\n{r.stderr}")
        bao_env = parse_exports(r.stdout)
        baddr, btok, bpid = bao_listen, bao_env["TOKEN"], int(bao_env["BAO_PID"])
        log(f"openbao PID {bpid} on {baddr}")
        s, b = req(baddr, "POST", "/v1/sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}, btok)
        assert s in (200, 204) or b"already in use" in b, (s, b)
        def kvw():
            s, _ = req(baddr, "POST", "/v1/secret/data/inject/s01", {"data": {"value": rnd40()}}, btok)
            return s if s == 200 else None
        poll(kvw, timeout=30, interval=0.05)
        bundle = {}
        for i in range(1, N_SECRETS + 1):
            v = rnd40()
            expect({200, 204}, baddr, "POST", f"/v1/secret/data/inject/s{i:02d}", {"data": {"value": v}}, btok)
            bundle[f"S{i:02d}"] = v
        expect({200, 204}, baddr, "POST", "/v1/secret/data/inject_bundle", {"data": bundle}, btok)
        lst = expect({200}, baddr, "LIST", "/v1/secret/metadata/inject/", None, btok)
        assert len(lst["data"]["keys"]) == N_SECRETS, lst
        log(f"openbao seeded: secret/inject/s01..s{N_SECRETS:02d}, secret/inject_bundle ({N_SECRETS} fields)")
        bbase = f"http://{baddr}"
        kvenv = {"TOKEN": btok, "KV_MOUNT": "secret"}
        bwl = {
            "kv_get": ("kv_get.lua", dict(kvenv, KV_PATH="inject/s01")),
            "kv_inject_list": ("kv_inject.lua", dict(kvenv, INJECT_PREFIX="inject")),
            "kv_inject_bundle": ("kv_get.lua", dict(kvenv, KV_PATH="inject_bundle")),
        }
        # pairs: coffer workload vs the OpenBao workloads it is compared with
        pairs = [("reveal", ["kv_get"]), ("inject", ["kv_inject_list", "kv_inject_bundle"])]
        pairs = [(cw, bws) for cw, bws in pairs if cw in WORKLOADS]
        for cw, _ in pairs:
            warmup(cwl[cw][0], cbase, cwl[cw][1])
        warmup(bwl["kv_get"][0], bbase, bwl["kv_get"][1])
        for run in range(1, RUNS + 1):
            for cw, bws in pairs:
                for n in CONNS:
                    jobs = [("coffer", cw)] + [("openbao", bw) for bw in bws]
                    if run % 2 == 0:  # alternate which system goes first
                        jobs = jobs[1:] + jobs[:1]
                    for sysname, w in jobs:
                        if sysname == "coffer":
                            run_wrk("coffer", w, n, THREADS, cwl[w][0], cbase, c.pid, cwl[w][1], OUT, run)
                        else:
                            # the LIST+GET transaction needs one connection per wrk thread
                            th = n if w == "kv_inject_list" else THREADS
                            run_wrk("openbao", w, n, th, bwl[w][0], bbase, bpid, bwl[w][1], OUT, run)
        c.stop()
        subprocess.run([os.path.join(kit, "stop.sh")], env=dict(os.environ, WORK=bao_work), check=False)
        bao_env = None
        if LIFECYCLE:
            coffer_lifecycle(OUT, store, init)
            QUIET.wait("openbao lifecycle")
            lw = os.path.join(OUT, "openbao-lifecycle")
            os.makedirs(lw, exist_ok=True)
            res = os.path.join(lw, "lifecycle.json")
            subprocess.run(["python3", os.path.join(kit, "lifecycle.py"), "--runs", env("BAO_LIFECYCLE_RUNS", "3"),
                            "--out", res],
                           env=dict(os.environ, WORK=lw, BAO_BIN=bao_bin, SETTLE_S=str(SETTLE_S),
                                    BAO_LISTEN=f"127.0.0.1:{free_port()}", BAO_CLUSTER=f"127.0.0.1:{free_port()}"),
                           check=True, stdout=subprocess.DEVNULL)
            with open(res) as f:
                lr = json.load(f)
            append(OUT, "runs.jsonl", {"kind": "bao_lifecycle", "system": "openbao", **lr})
            shutil.rmtree(os.path.join(lw, "lifecycle"), ignore_errors=True)
    finally:
        c.stop()
        if bao_env is not None:
            subprocess.run([os.path.join(kit, "stop.sh")], env=dict(os.environ, WORK=bao_work), check=False)
        store.drop()
    summarize(OUT, f"coffer ({BACKEND}) vs OpenBao 2.7.2 (raft), alternated, {time.strftime('%Y-%m-%d %H:%M')}")


def mem_breakdown(pid):
    """VmRSS & co. from /proc/PID/status, and the resident anonymous memory
    by kind from /proc/PID/smaps: glibc's main heap ([heap]), its other
    arenas (each a 64 MiB-aligned reservation of 64 MiB, made for threads
    that contended for malloc; every mapping inside one counts), thread
    stacks (a read-write mapping of 256 kB or more right above a 4 kB guard
    page — smaller ones are guarded key pages —: tokio workers
    and blocking threads, sqlx's SQLite connection threads), everything else
    anonymous (malloc blocks of 1 MiB and more, which get their own mmap;
    locked key pages), and the file-backed pages (the binary, libraries)."""
    st = status_kb(pid)
    maps = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                cur = {"lo": lo, "hi": hi, "perms": head[1], "name": head[5] if len(head) > 5 else "", "rss": 0}
                maps.append(cur)
            elif head and head[0] == "Rss:" and cur is not None:
                cur["rss"] = int(head[1])
    arena_size = 64 << 20
    anon = [m for m in maps if m["name"] == "" or m["name"].startswith("[anon")]
    bases = {m["lo"] for m in anon if m["lo"] % arena_size == 0 and m["hi"] - m["lo"] <= arena_size}
    kinds = {"heap": 0, "arenas": 0, "stacks": 0, "other_anon": 0, "file": 0}
    n_stacks = 0
    prev = None
    for m in maps:
        name = m["name"]
        if name == "[heap]":
            kinds["heap"] += m["rss"]
        elif name == "[stack]":
            kinds["stacks"] += m["rss"]
        elif name and not name.startswith("["):
            kinds["file"] += m["rss"]
        elif m in anon and (m["lo"] - m["lo"] % arena_size) in bases:
            kinds["arenas"] += m["rss"]
        elif m in anon and m["perms"].startswith("rw") and m["hi"] - m["lo"] >= 256 << 10 and prev is not None \
                and prev["hi"] == m["lo"] and prev["perms"].startswith("---") and prev["hi"] - prev["lo"] == 4096:
            kinds["stacks"] += m["rss"]
            n_stacks += 1
        elif m in anon:
            kinds["other_anon"] += m["rss"]
        prev = m
    return {"VmRSS_kb": st.get("VmRSS"), "VmHWM_kb": st.get("VmHWM"), "RssAnon_kb": st.get("RssAnon"),
            "RssFile_kb": st.get("RssFile"), "VmLck_kb": st.get("VmLck"), "Threads": st.get("Threads"),
            **{k + "_kb": v for k, v in kinds.items()}, "arena_count": len(bases), "stack_count": n_stacks}


MEM_TARGETS = {"unsealed_idle": 30, "after_load": 40}  # MiB (performance issue)


def mode_memory():
    """RSS of a coffer server: sealed idle, unsealed idle (init, unseal, 30
    secrets seeded), right after a load run of every workload in
    MEM_WORKLOADS at every CONNS (reveal, inject, KV v2 writes to one key and
    to 64 keys), and MEM_SETTLE_S later. Prints a table and one JSON line per
    sample; exits 1 if a target of the issue is missed."""
    os.makedirs(OUT, exist_ok=True)
    snapshot_binary()
    workloads = env("MEM_WORKLOADS", "reveal inject write_spread write_one").split()
    settle_after = float(env("MEM_SETTLE_S", "15"))
    store = Store(OUT)
    c = Coffer(OUT, store)
    samples = []

    def sample(what):
        m = mem_breakdown(c.pid)
        m.update(sample=what, backend=BACKEND)
        samples.append(m)
        append(OUT, "memory.jsonl", m)
        log(f"{what}: VmRSS {m['VmRSS_kb'] / 1024:.1f} MiB (anon {m['RssAnon_kb'] / 1024:.1f}: heap "
            f"{m['heap_kb'] / 1024:.1f}, {m['arena_count']} arenas {m['arenas_kb'] / 1024:.1f}, "
            f"{m['stack_count']} stacks {m['stacks_kb'] / 1024:.1f}, other {m['other_anon_kb'] / 1024:.1f}; "
            f"file {m['RssFile_kb'] / 1024:.1f}), {m['Threads']} threads, VmHWM {m['VmHWM_kb'] / 1024:.1f} MiB")
    try:
        c.start(SERVER_CPUS)
        time.sleep(SETTLE_S)
        sample("sealed_idle")
        init = coffer_setup(c)
        time.sleep(SETTLE_S)
        sample("unsealed_idle")
        if LOAD:
            base, wl = coffer_workloads(c, init["root_token"])
            for w in workloads:
                for n in CONNS:
                    run_wrk("coffer", w, n, THREADS, wl[w][0], base, c.pid, wl[w][1], OUT, 1,
                            db_cpu=BACKEND == "postgres")
            sample("after_load")
            time.sleep(settle_after)
            sample(f"after_load_{settle_after:.0f}s")
    finally:
        c.stop()
        store.drop()
    lines = [f"### coffer ({BACKEND}) memory, {time.strftime('%Y-%m-%d %H:%M')}", "",
             "| sample | VmRSS MiB | anon MiB | [heap] | arenas (n) | stacks (n) | other anon | file MiB | threads | target |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    fails = []
    for m in samples:
        t = MEM_TARGETS.get(m["sample"])
        verdict = ""
        if t is not None:
            ok = m["VmRSS_kb"] / 1024 < t
            verdict = f"< {t} MiB: {'yes' if ok else '**no**'}"
            if not ok:
                fails.append(f"{m['sample']} {m['VmRSS_kb'] / 1024:.1f} MiB >= {t} MiB")
        mib = lambda k: f"{m[k] / 1024:.1f}"
        lines.append(f"| {m['sample']} | {mib('VmRSS_kb')} | {mib('RssAnon_kb')} | {mib('heap_kb')} | "
                     f"{mib('arenas_kb')} ({m['arena_count']}) | {mib('stacks_kb')} ({m['stack_count']}) | "
                     f"{mib('other_anon_kb')} | {mib('RssFile_kb')} | {m['Threads']} | {verdict} |")
    rows = [json.loads(l) for l in open(os.path.join(OUT, "runs.jsonl"))] if os.path.exists(
        os.path.join(OUT, "runs.jsonl")) else []
    if rows:
        lines += ["", "Load: " + "; ".join(f"{r['figure']} {r['rps']:.0f} req/s" for r in rows)
                  + f" ({DURATION} each, server CPUs {SERVER_CPUS or 'all'})."]
    md = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "memory.md"), "w") as f:
        f.write(md)
    print(md)
    for m in samples:
        print(json.dumps(m))
    if fails:
        print("MISSED: " + "; ".join(fails))
        sys.exit(1)


# --- the performance issue's table: coffer vs OpenBao --------------------------

# (key, label, conns, threads, coffer workload, OpenBao workload, unit)
VAULT_ROWS = [
    ("read_c8", "read, 8 conns (OpenBao KV GET, coffer native reveal)", 8, 2, "reveal", "kv_get", "req"),
    ("kv_get_c64", "KV v2 GET, 64 conns", 64, 2, "kv_get", "kv_get", "req"),
    ("inject_c1", "inject 30 secrets, 1 conn (OpenBao LIST + 30 GETs)", 1, 1, "inject", "kv_inject_list", "inject"),
    ("write_spread_c8", "write, 8 conns, spread over 64 keys", 8, 2, "write_spread", "write_spread", "req"),
    ("write_one_c8", "write, 8 conns, all on one key", 8, 2, "write_one", "write_one", "req"),
]


def vault_goals(key):
    """The issue's goals for a row: (name, test(coffer, openbao) -> (ok, text))."""
    if key in ("read_c8", "kv_get_c64"):
        return [("throughput ≥ 3× OpenBao's",
                 lambda c, o: (c["ops"] >= 3 * o["ops"], f"{c['ops'] / o['ops']:.2f}×")),
                ("server CPU per request ≤ ⅓ of OpenBao's",
                 lambda c, o: (c["cpu"] <= o["cpu"] / 3, f"{c['cpu'] / o['cpu']:.2f}×"))]
    if key.startswith("write_"):
        return [("p99 ≤ OpenBao's", lambda c, o: (c["p99"] <= o["p99"], f"{c['p99'] / o['p99']:.2f}×")),
                ("0 failed requests", lambda c, o: (c["failed"] == 0, f"{c['failed']} failed"))]
    return []


def mode_vault(check):
    """coffer (BACKEND, default SQLite, auditing every request) and OpenBao
    2.7.2 (raft, no audit device) on the issue's five workloads, same wrk
    scripts, servers on SERVER_CPUS, wrk on WRK_CPUS. ROUNDS rounds; each
    round starts both servers on fresh stores, seeds them, warms them up, then
    runs every workload on both, in alternating order (coffer first on odd
    rounds)."""
    kit = env("KIT", "/work/shared/anchors/openbao")
    bao_bin = os.environ["BAO_BIN"]
    rounds = int(env("ROUNDS", "2"))
    os.makedirs(OUT, exist_ok=True)
    snapshot_binary()
    log(f"results in {OUT}; coffer backend {BACKEND}; bao {bao_bin}; {rounds} rounds of {DURATION}")
    body5 = {"data": {"db_username": rnd40(), "db_password": rnd40(), "api_key": rnd40(),
                      "jwt_signing_secret": rnd40(), "smtp_password": rnd40()}}
    results = []  # one dict per (round, row, system)
    mem = []
    for rnd in range(1, rounds + 1):
        out = os.path.join(OUT, f"round{rnd}")
        os.makedirs(out, exist_ok=True)
        store = Store(out)
        c = Coffer(out, store)
        bao_work = os.path.join(out, "openbao")
        os.makedirs(bao_work, exist_ok=True)
        bao_up = False
        try:
            # coffer: 30 secrets in o/p/e (reveal, inject); KV v2 reads and writes in o/p/kv
            c.start(SERVER_CPUS)
            init = coffer_setup(c)
            tok = init["root_token"]
            expect({200, 201}, c.addr, "POST", f"/api/v1/orgs/{ORG}/projects/{PROJECT}/environments",
                   {"slug": "kv", "name": "KV", "protected": False}, tok)
            expect({200, 204}, c.addr, "POST", f"/v1/secret/data/{ORG}/{PROJECT}/kv/APP", body5, tok)
            time.sleep(SETTLE_S)
            mem.append({"round": rnd, "sample": "idle", **status_kb(c.pid)})
            cbase = f"http://{c.addr}"
            kv = {"TOKEN": tok, "KV_MOUNT": "secret"}
            cwl = {
                "reveal": ("coffer_reveal.lua", {"TOKEN": tok,
                                                 "REVEAL_PATH": f"{c.env_path()}/secrets/{REVEAL_KEY}?reveal=true"}),
                "kv_get": ("kv_get.lua", dict(kv, KV_PATH=f"{ORG}/{PROJECT}/kv/APP")),
                "inject": ("coffer_inject.lua", {"TOKEN": tok, "INJECT_PATH": f"{c.env_path()}/inject"}),
                "write_spread": ("coffer_kv_post.lua", {"TOKEN": tok, "SPREAD": "64",
                                                        "WRITE_PATH": f"/v1/secret/data/{ORG}/{PROJECT}/kv/W"}),
                "write_one": ("coffer_kv_post.lua", {"TOKEN": tok, "SPREAD": "1",
                                                     "WRITE_PATH": f"/v1/secret/data/{ORG}/{PROJECT}/kv/W"}),
            }
            # OpenBao: the kit's start.sh (raft, TLS off, 5/3, unsealed, pinned), KV v2 at secret/
            bao_listen, bao_cluster = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            r = subprocess.run([os.path.join(kit, "start.sh")], capture_output=True, text=True,
                               env=dict(os.environ, WORK=bao_work, BAO_BIN=bao_bin, FRESH="1",
                                        BAO_CPUS=SERVER_CPUS, BAO_LISTEN=bao_listen, BAO_CLUSTER=bao_cluster))
            with open(os.path.join(bao_work, "start.stderr"), "w") as f:
                f.write(r.stderr)
            if r.returncode != 0:
                raise RuntimeError(f"openbao start.sh failed:\n{r.stderr}")
            bao_up = True
            bao_env = parse_exports(r.stdout)
            baddr, btok, bpid = bao_listen, bao_env["TOKEN"], int(bao_env["BAO_PID"])
            s_, b_ = req(baddr, "POST", "/v1/sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}, btok)
            assert s_ in (200, 204) or b"already in use" in b_, (s_, b_)

            def kvw():
                s2, _ = req(baddr, "POST", "/v1/secret/data/bench/app", body5, btok)
                return s2 if s2 == 200 else None
            poll(kvw, timeout=30, interval=0.05)
            for i in range(1, N_SECRETS + 1):
                expect({200, 204}, baddr, "POST", f"/v1/secret/data/inject/s{i:02d}", {"data": {"value": rnd40()}},
                       btok)
            bbase = f"http://{baddr}"
            bkv = {"TOKEN": btok, "KV_MOUNT": "secret"}
            bwl = {
                "kv_get": ("kv_get.lua", dict(bkv, KV_PATH="bench/app")),
                "kv_inject_list": ("kv_inject.lua", dict(bkv, INJECT_PREFIX="inject")),
                "write_spread": ("coffer_kv_post.lua", {"TOKEN": btok, "SPREAD": "64",
                                                        "WRITE_PATH": "/v1/secret/data/bench/W"}),
                "write_one": ("coffer_kv_post.lua", {"TOKEN": btok, "SPREAD": "1",
                                                     "WRITE_PATH": "/v1/secret/data/bench/W"}),
            }
            warmup(cwl["reveal"][0], cbase, cwl["reveal"][1])
            warmup(cwl["kv_get"][0], cbase, cwl["kv_get"][1])
            warmup(bwl["kv_get"][0], bbase, bwl["kv_get"][1])
            order = ["coffer", "openbao"] if rnd % 2 == 1 else ["openbao", "coffer"]
            for key, _label, conns, threads, cw, bw, unit in VAULT_ROWS:
                for sysname in order:
                    if sysname == "coffer":
                        w, (script, e), base, pid = cw, cwl[cw], cbase, c.pid
                    else:
                        w, (script, e), base, pid = bw, bwl[bw], bbase, bpid
                    rr = run_wrk(sysname, w, conns, threads, script, base, pid, e, out, rnd,
                                 db_cpu=(sysname == "coffer" and BACKEND == "postgres"), allow_errors=True)
                    if unit == "inject" and "injects_per_s" in rr:
                        ops, p99, cpu = rr["injects_per_s"], rr["inject_p99_ms"], rr.get("server_cpu_us_per_inject")
                    else:
                        ops, p99, cpu = rr["rps"], rr["p99_ms"], rr.get("server_cpu_us_per_req")
                    res = {"round": rnd, "row": key, "system": sysname, "ops": ops, "p99": p99, "cpu": cpu,
                           "failed": rr["failed"], "quiet": rr["quiet"], "load1": rr["load1"],
                           "rustc": rr["rustc"]}
                    results.append(res)
                    append(OUT, "vault.jsonl", res)
            mem.append({"round": rnd, "sample": "after_load", **status_kb(c.pid)})
        finally:
            c.stop()
            if bao_up:
                subprocess.run([os.path.join(kit, "stop.sh")], env=dict(os.environ, WORK=bao_work), check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            store.drop()
    sys.exit(vault_table(results, mem, check))


def vault_table(results, mem, check):
    """Print the issue's table (ranges over rounds) and the goals; return the
    exit code (1 with --check when a goal is missed)."""
    def rng(vals, f):
        lo, hi = min(vals), max(vals)
        return f(lo) if f(lo) == f(hi) else f"{f(lo)}–{f(hi)}"
    n0 = lambda v: f"{v:,.0f}"
    ms = lambda v: f"{v:.1f}" if v >= 10 else f"{v:.2f}"
    lines = [f"### coffer ({BACKEND}, audit on) vs OpenBao 2.7.2 (raft, no audit device), "
             f"{time.strftime('%Y-%m-%d %H:%M')}", "",
             "| workload | OpenBao | coffer | ratio coffer/OpenBao | goal |", "|---|---|---|---|---|"]
    verdicts = []
    for key, label, _conns, _threads, _cw, _bw, unit in VAULT_ROWS:
        cell = {}
        for sysname in ("openbao", "coffer"):
            rs = [r for r in results if r["row"] == key and r["system"] == sysname]
            if not rs:
                cell[sysname] = "-"
                continue
            u = "/s" if unit == "inject" else " req/s"
            txt = f"{rng([r['ops'] for r in rs], n0)}{u}, p99 {rng([r['p99'] for r in rs], ms)} ms"
            cpus_ = [r["cpu"] for r in rs if r["cpu"] is not None]
            if cpus_:
                txt += f", {rng(cpus_, n0)} µs CPU/{'inject' if unit == 'inject' else 'req'}"
            failed = sum(r["failed"] for r in rs)
            if failed:
                txt += f", **{failed} failed**"
            cell[sysname] = txt
        # paired per-round ratios
        pairs = []
        for rnd in sorted({r["round"] for r in results}):
            c = next((r for r in results if r["row"] == key and r["system"] == "coffer" and r["round"] == rnd), None)
            o = next((r for r in results if r["row"] == key and r["system"] == "openbao" and r["round"] == rnd), None)
            if c and o:
                pairs.append((c, o))
        ratio = "-"
        if pairs:
            ratio = f"{rng([c['ops'] / o['ops'] for c, o in pairs], lambda v: f'{v:.2f}')}× throughput"
            if all(c["cpu"] and o["cpu"] for c, o in pairs):
                ratio += f", CPU {rng([c['cpu'] / o['cpu'] for c, o in pairs], lambda v: f'{v:.2f}')}×"
            ratio += f", p99 {rng([c['p99'] / o['p99'] for c, o in pairs], lambda v: f'{v:.2f}')}×"
        goal_txt = []
        for name, test in vault_goals(key):
            if not pairs:
                continue
            # the goal on the median over rounds of the paired figures
            med = lambda rs, k: statistics.median([r[k] for r in rs])
            cm = {k: med([c for c, _ in pairs], k) for k in ("ops", "p99", "cpu")}
            om = {k: med([o for _, o in pairs], k) for k in ("ops", "p99", "cpu")}
            cm["failed"] = sum(c["failed"] for c, _ in pairs)
            ok, val = test(cm, om)
            goal_txt.append(f"{name}: {val} {'met' if ok else '**missed**'}")
            verdicts.append((label, name, ok, val))
        lines.append(f"| {label} | {cell['openbao']} | {cell['coffer']} | {ratio} | "
                     f"{'; '.join(goal_txt) or 'no goal'} |")
    loaded = [r for r in results if not r["quiet"]]
    rounds = len({r["round"] for r in results})
    lines += ["", f"{rounds} round(s) × {DURATION} per workload and server, alternated (coffer first on odd rounds); "
              f"servers pinned to cpu {SERVER_CPUS}, wrk to cpu {WRK_CPUS}; ranges are min–max over rounds, goals "
              "judged on the medians. Quiet-machine rule (1-min load < " + f"{QUIET_LOAD}, no rustc) "
              + ("held before every run." if not loaded else
                 f"**not met before {len(loaded)} of {len(results)} runs** (max load1 "
                 f"{max(r['load1'] for r in loaded):.2f}, which includes this benchmark's own previous run; "
                 f"rustc processes running before {sum(1 for r in results if r['rustc'])} run(s)).")]
    if mem:
        idle = [m["VmRSS"] / 1024 for m in mem if m["sample"] == "idle"]
        post = [m["VmRSS"] / 1024 for m in mem if m["sample"] == "after_load"]
        lines.append(f"coffer VmRSS: idle (unsealed, seeded) {rng(idle, lambda v: f'{v:.1f}')} MiB, "
                     f"after the load {rng(post, lambda v: f'{v:.1f}') if post else '-'} MiB.")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "summary.md"), "w") as f:
        f.write(md)
    print(md)
    missed = [v for v in verdicts if not v[2]]
    for label, name, ok, val in verdicts:
        print(f"{'ok    ' if ok else 'MISSED'} {label}: {name} ({val})")
    if check and missed:
        print(f"--check: {len(missed)} goal(s) missed")
        return 1
    return 0


def mode_profile():
    """Where a request's server CPU goes: syscalls per request (strace -c over
    PROFILE_REQS sequential requests) and a perf cpu-clock profile (dwarf call
    graphs) under wrk with PROFILE_CONNS (8) connections for PROFILE_S seconds,
    per workload."""
    os.makedirs(OUT, exist_ok=True)
    snapshot_binary()
    n_req, prof_s = int(env("PROFILE_REQS", "200")), env("PROFILE_S", "4")
    prof_conns = env("PROFILE_CONNS", "8")
    store = Store(OUT)
    c = Coffer(OUT, store)
    try:
        c.start(SERVER_CPUS)
        tok = coffer_setup(c)["root_token"]
        base, wl = coffer_workloads(c, tok)
        host, port = c.addr.rsplit(":", 1)
        for w in WORKLOADS:
            method, path = {"reveal": ("GET", wl["reveal"][1]["REVEAL_PATH"]),
                            "inject": ("POST", wl["inject"][1]["INJECT_PATH"])}[w]
            conn = http.client.HTTPConnection(host, int(port))
            def one():
                conn.request(method, path, headers={"X-Vault-Token": tok})
                r = conn.getresponse(); r.read()
                assert r.status == 200, r.status
            for _ in range(10):
                one()
            st_file = os.path.join(OUT, f"strace_{w}.txt")
            st = subprocess.Popen(["strace", "-c", "-f", "-o", st_file, "-p", str(c.pid)], stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            for _ in range(n_req):
                one()
            time.sleep(0.3)
            st.send_signal(signal.SIGINT)
            st.wait()
            conn.close()
            counts = {}
            for line in open(st_file):
                f = line.split()
                if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                    counts[f[-1]] = int(f[3])
            per = {k: round(v / n_req, 2) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
            log(f"{w}: syscalls per request: {per}")
            append(OUT, "profile.jsonl", {"workload": w, "syscalls_per_request": per, "requests": n_req})
            data = os.path.join(OUT, f"perf_{w}.data")
            wrk = subprocess.Popen((["taskset", "-c", WRK_CPUS] if WRK_CPUS else []) + [
                WRK, "-t", "2", "-c", prof_conns, "-d", f"{int(prof_s) + 2}s", "-s", os.path.join(LUA_DIR, wl[w][0]), base],
                env=dict(os.environ, LUA_DIR=LUA_DIR, **wl[w][1]), stdout=subprocess.DEVNULL)
            time.sleep(1)
            subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "--call-graph", "dwarf,16384",
                            "-p", str(c.pid), "-o", data, "--", "sleep", prof_s],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            wrk.wait()
            rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--children", "--sort", "sym",
                                  "-g", "none", "--percent-limit", "2"], capture_output=True, text=True).stdout
            keep = re.compile(r"coffer::|memsec|sqlx|serde_json|aes|KeyBytes|mprotect|mlock|munlock|madvise|"
                              r"futex|writev|recvfrom|_int_malloc|sys_(?!tem)", re.I)
            lines = [l for l in rep.splitlines() if l.strip() and not l.startswith("#") and keep.search(l)]
            with open(os.path.join(OUT, f"perf_{w}.txt"), "w") as f:
                f.write(rep)
            print(f"== {w}: perf cpu-clock, children %, self % (filtered; full report in {OUT}/perf_{w}.txt)")
            print("\n".join(l[:170] for l in lines[:40]))
            print(f"== {w}: syscalls per request: {json.dumps(per)}")
            if env("PROFILE_KEEP", "0") != "1":
                os.remove(data)
    finally:
        c.stop()
        store.drop()


if __name__ == "__main__":
    # SIGTERM/SIGINT unwind through the finally blocks, which stop our servers
    # (a background shell may have started us with SIGINT ignored).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if len(sys.argv) == 3 and sys.argv[1] == "summarize":
        OUT = os.path.abspath(sys.argv[2])
        summarize(OUT, f"re-summarized {OUT}")
    elif len(sys.argv) == 2 and sys.argv[1] == "run":
        mode_run()
    elif len(sys.argv) == 2 and sys.argv[1] == "compare":
        mode_compare()
    elif len(sys.argv) == 2 and sys.argv[1] == "profile":
        mode_profile()
    elif len(sys.argv) == 2 and sys.argv[1] == "memory":
        mode_memory()
    elif len(sys.argv) in (2, 3) and sys.argv[1] == "vault" and sys.argv[2:] in ([], ["--check"]):
        mode_vault(check=sys.argv[2:] == ["--check"])
    else:
        sys.exit(__doc__)
