#!/usr/bin/env python3
"""seal "pkcs11" on SoftHSM2: boot-to-serving time and HSM unwrap latency.

    bench/hsm_boot.py                 # 10 starts, release binary (cargo build --release first)
    STARTS=20 COFFER_BIN=path bench/hsm_boot.py

Each start: spawn `coffer server` (SQLite, plain HTTP, port 0), wait for the
`coffer: listening on` line, poll GET /v1/sys/seal-status every 2 ms until
`sealed` is false. boot_to_serving = spawn -> first unsealed answer (target
< 1 s). unwrap_ms is what the server logs for the HSM step (C_Initialize,
find slot, login, find key, C_Decrypt, C_Finalize). A private SOFTHSM2_CONF
and token dir per run; standard library only. Prints RESULT {json} lines.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request, re

MODULE = os.environ.get("PKCS11_SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
STARTS = int(os.environ.get("STARTS", "10"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.environ.get("COFFER_BIN", os.path.join(TARGET, "release", "coffer"))


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def start(binary, config, env, log):
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "server", "--config", config], env=env, stdout=subprocess.PIPE,
                         stderr=open(log, "a"), text=True)
    for line in p.stdout:
        if line.startswith("coffer: listening on "):
            return p, line.split()[-1], t0, time.perf_counter()
    raise SystemExit(f"server did not start; see {log}")


def main():
    w = tempfile.mkdtemp(prefix="coffer-hsm-bench-")
    binary = os.path.join(w, "coffer")
    shutil.copy(BIN, binary)
    tokens = os.path.join(w, "tokens"); os.mkdir(tokens)
    conf = os.path.join(w, "softhsm2.conf")
    open(conf, "w").write(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = dict(os.environ, SOFTHSM2_CONF=conf, COFFER_LOG_FORMAT="text")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", "1234",
                    "--so-pin", "5678"], env=env, check=True, capture_output=True)
    pin = os.path.join(w, "pin"); open(pin, "w").write("1234\n")
    config = os.path.join(w, "coffer.toml")
    open(config, "w").write(
        f'[listener]\naddress = "127.0.0.1:0"\ntls_disable = true\n[storage]\nurl = "sqlite://{w}/coffer.db"\n'
        f'[seal]\ntype = "pkcs11"\nmodule = "{MODULE}"\ntoken_label = "bench"\nkey_label = "root"\npin_file = "{pin}"\n')
    subprocess.run([binary, "operator", "hsm-keygen", "--config", config], env=env, check=True, capture_output=True)
    log = os.path.join(w, "server.log")
    p, url, _, _ = start(binary, config, env, log)
    http("PUT", url + "/v1/sys/init", {"recovery_shares": 5, "recovery_threshold": 3})
    p.terminate(); p.wait()
    boots, listens, unwraps = [], [], []
    for _ in range(STARTS):
        before = os.path.getsize(log)
        p, url, t0, t_listen = start(binary, config, env, log)
        while True:
            if not http("GET", url + "/v1/sys/seal-status")["sealed"]:
                break
            time.sleep(0.002)
        t1 = time.perf_counter()
        p.terminate(); p.wait()
        boots.append((t1 - t0) * 1000); listens.append((t_listen - t0) * 1000)
        with open(log) as f:
            f.seek(before)
            text = re.sub(r"\x1b\[[0-9;]*m", "", f.read())  # the text log may carry ANSI colours
            m = re.search(r"unwrap_ms=([0-9.]+)", text)
            if m:
                unwraps.append(float(m.group(1)))
    for name, xs, target in [("pkcs11_boot_to_serving_ms", boots, 1000), ("pkcs11_start_to_listening_ms", listens, None),
                             ("hsm_unwrap_at_boot_ms", unwraps, None)]:
        if not xs:
            continue
        fig = {"figure": name, "median": round(statistics.median(xs), 2), "min": round(min(xs), 2),
               "max": round(max(xs), 2), "n": len(xs)}
        if target:
            fig.update(target=target, **{"pass": statistics.median(xs) < target})
        print("RESULT " + json.dumps(fig))
    shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    main()
