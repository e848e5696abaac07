#!/usr/bin/env python3
"""The suppression list in cluster mode: an import of 100,000 addresses on one node, cluster
mode off and on, alternating.

Each run starts one `mta` node (2 shards, delivery on hold) in a temporary directory; a run in
cluster mode also starts a private redis-server (a free loopback port, no persistence) and
names it in `[cluster]`. It times `mta suppression import` of 100,000 addresses, and in
cluster mode how long until every change is published (`mta_suppression_cluster_published_total`),
the CPU the node used (from /proc, up to then plus 1.5 s), Redis's CPU and memory, and the
Redis calls (`INFO commandstats`). Then two runs with two nodes on one Redis: how long until the
second node lists all 100,000 addresses imported on the first. Prints every run and the medians.

Usage: benches/suppression_cluster.py [RUNS] (default 3); the binary is target/release/mta
(or $MTA). Everything it starts is stopped by PID; all traffic stays on 127.0.0.1. Needs
redis-server and redis-cli.
"""
import os, re, socket, subprocess, sys, tempfile, time, shutil

MTA = os.environ.get("MTA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "mta"))
N = 100_000

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def redis_cmd(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True)
    return out.stdout

def start_mta(d, cluster):
    cfg = os.path.join(d, "mta.toml")
    extra = f'[cluster]\nredis = "redis://127.0.0.1:{cluster[0]}/0"\nnode = "{cluster[1]}"\n' if cluster else ""
    open(cfg, "w").write(f'''hostname = "mx.test"
shards = 2
[[listeners]]
address = "127.0.0.1:0"
[log]
dir = "{d}/log"
[spool]
path = "{d}/spool"
min_free_space = 0
min_free_percent = 0.0
[delivery]
hold = true
[admin]
listen = "127.0.0.1:0"
{extra}''')
    p = subprocess.Popen([MTA, "run", "--config", cfg], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         text=True, env={**os.environ, "MTA_LOG": "info"})
    admin = None
    deadline = time.time() + 30
    while time.time() < deadline:
        line = p.stderr.readline()
        m = re.search(r"admin API on (\S+)", line)
        if m: admin = m.group(1)
        if " ready" in line and admin:
            # keep draining stderr so the pipe never fills
            import threading
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, cfg, admin
    raise SystemExit("mta did not start")

def metric(admin, name):
    host, port = admin.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b: break
        data += b
    for l in data.decode().splitlines():
        if l.startswith(name + " "):
            return float(l.split()[1])
    return None

def calls(port):
    info = redis_cmd(port, "INFO", "commandstats")
    out = {}
    for l in info.splitlines():
        m = re.match(r"cmdstat_(\w+):calls=(\d+)", l)
        if m: out[m.group(1)] = int(m.group(2))
    return out

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def redis_cpu(port):
    t = redis_cmd(port, "INFO", "cpu")
    g = lambda k: float(re.search(k + r":([\d.]+)", t).group(1))
    return g("used_cpu_sys") + g("used_cpu_user")

def run(cluster_on, addr_file):
    d = tempfile.mkdtemp(prefix="suppbench")
    redis = None
    try:
        cl = None
        if cluster_on:
            rport = free_port()
            redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL)
            for _ in range(100):
                if "PONG" in redis_cmd(rport, "PING"): break
                time.sleep(0.05)
            cl = (rport, "a")
        p, cfg, admin = start_mta(d, cl)
        time.sleep(1)
        before = calls(cl[0]) if cl else {}
        mem0 = redis_cmd(cl[0], "INFO", "memory") if cl else ""
        c0 = cpu(p.pid); rc0 = redis_cpu(cl[0]) if cl else 0
        t0 = time.time()
        r = subprocess.run([MTA, "suppression", "import", addr_file, "--config", cfg, "--url", f"http://{admin}"],
                           capture_output=True, text=True)
        t_import = time.time() - t0
        assert r.returncode == 0, r.stderr
        t_pub = None
        if cl:
            deadline = time.time() + 300
            while time.time() < deadline:
                if metric(admin, "mta_suppression_cluster_published_total") == N:
                    t_pub = time.time() - t0; break
                time.sleep(0.02)
            time.sleep(1.5)
            after = calls(cl[0])
            diff = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
            used = lambda t: int(re.search(r"used_memory:(\d+)", t).group(1))
            mem = used(redis_cmd(cl[0], "INFO", "memory")) - used(mem0)
            hlen = redis_cmd(cl[0], "HLEN", "mta:suppression:state").strip()
            xlen = redis_cmd(cl[0], "XLEN", "mta:suppression").strip()
            print(f"  redis calls during import+publish: {diff}; memory +{mem/1e6:.1f} MB; HLEN {hlen}; XLEN {xlen}", flush=True)
        if not cl:
            time.sleep(1.5)
        c1 = cpu(p.pid); rc1 = redis_cpu(cl[0]) if cl else 0
        print(f"  mta cpu {c1 - c0:.2f}s" + (f", redis cpu {rc1 - rc0:.2f}s" if cl else ""), flush=True)
        RES_CPU[cluster_on].append(c1 - c0)
        p.terminate(); p.wait(timeout=40)
        return t_import, t_pub
    finally:
        if redis: redis.kill(); redis.wait()
        shutil.rmtree(d, ignore_errors=True)

def listed(cfg, admin):
    r = subprocess.run([MTA, "suppression", "list", "--limit", "1", "--json", "--config", cfg, "--url", f"http://{admin}"],
                       capture_output=True, text=True)
    import json
    return json.loads(r.stdout)["listed"]

def two_nodes(addr_file):
    d = tempfile.mkdtemp(prefix="suppbench2")
    rport = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if "PONG" in redis_cmd(rport, "PING"): break
            time.sleep(0.05)
        os.makedirs(d + "/a"); os.makedirs(d + "/b")
        pa, cfga, admina = start_mta(d + "/a", (rport, "a"))
        pb, cfgb, adminb = start_mta(d + "/b", (rport, "b"))
        time.sleep(1)
        t0 = time.time()
        r = subprocess.run([MTA, "suppression", "import", addr_file, "--config", cfga, "--url", f"http://{admina}"],
                           capture_output=True, text=True)
        t_import = time.time() - t0
        t_b = None
        deadline = time.time() + 300
        while time.time() < deadline:
            if listed(cfgb, adminb) == N:
                t_b = time.time() - t0; break
            time.sleep(0.05)
        print(f"two nodes: import on a {t_import:.3f}s; all {N} listed on b {t_b:.3f}s after the import started", flush=True)
        pa.terminate(); pb.terminate(); pa.wait(timeout=40); pb.wait(timeout=40)
    finally:
        redis.kill(); redis.wait()
        shutil.rmtree(d, ignore_errors=True)

RES_CPU = {False: [], True: []}

def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    work = tempfile.mkdtemp(prefix="suppbench-list")
    f = os.path.join(work, "addresses.txt")
    with open(f, "w") as out:
        for i in range(N):
            out.write(f"user{i}@example{i % 97}.test,imported\n")
    res = {False: [], True: []}
    for r in range(rounds):
        for on in (False, True):
            t_imp, t_pub = run(on, f)
            res[on].append((t_imp, t_pub))
            print(f"round {r+1} cluster={'on ' if on else 'off'} import {t_imp:.3f}s" +
                  (f", all published {t_pub:.3f}s after the import started" if t_pub else ""), flush=True)
    med = lambda xs: sorted(xs)[len(xs)//2]
    off = med([x[0] for x in res[False]]); on = med([x[0] for x in res[True]])
    pub = med([x[1] for x in res[True]])
    print(f"median import: off {off:.3f}s, on {on:.3f}s, ratio on/off {on/off:.2f}; median until all published {pub:.3f}s")
    print(f"median mta cpu: off {med(RES_CPU[False]):.2f}s, on {med(RES_CPU[True]):.2f}s (includes 1.5 s idle after)")
    for _ in range(2):
        two_nodes(f)
    shutil.rmtree(work, ignore_errors=True)

main()
