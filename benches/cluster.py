#!/usr/bin/env python3
"""Two MTA nodes relaying to one sink, with and without cluster mode, alternating.

Starts a private redis-server (a temporary directory, a free loopback port, no persistence),
a `loadgen sink`, and for each run two `mta` nodes (one shard each) whose route to the sink has
a connection limit and a message rate; two `loadgen send` processes load one node each. A run
in cluster mode names the Redis in `[cluster]`; a run without it does not. It prints the
delivered rate of every run, the median ratio cluster / no cluster with the spread, and the
Redis commands per delivered message (from Redis's own `INFO commandstats`).

Usage: benches/cluster.py [--messages 20000] [--runs 3] [--connections 25]
                          [--max-connections 8] [--rate 20000/s] [--bin target/release]
                          [--split-limit]
Everything it starts is stopped by PID; all traffic stays on 127.0.0.1.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=20.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def redis_cmd(port, *args):
    """One command in RESP; returns the raw reply."""
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        a = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(out)
        data = b""
        s.settimeout(0.3)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
    return data.decode(errors="replace")


def redis_calls(port):
    """Commands the nodes sent (EVALSHA, SCRIPT, PUBLISH, SUBSCRIBE, and the direct HSET/HDEL of
    suspensions, none in this benchmark). INFO commandstats also counts the commands a script
    runs inside Redis; those are not calls and are left out: every script is one EVALSHA."""
    sent = ("cmdstat_evalsha", "cmdstat_script", "cmdstat_publish", "cmdstat_subscribe")
    total = 0
    for line in redis_cmd(port, "INFO", "commandstats").splitlines():
        name = line.split(":")[0]
        if name in sent and "calls=" in line:
            total += int(line.split("calls=")[1].split(",")[0])
    return total


def sink_connections(port):
    """Established connections to the sink's port on 127.0.0.1 (from /proc/net/tcp; a line
    the kernel repeats across its read chunks is counted once)."""
    want = f":{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return 0
    seen = set()
    for line in lines:
        cols = line.split()
        if len(cols) > 3 and cols[2].endswith(want) and cols[3] == "01":
            seen.add((cols[1], cols[2]))
    return len(seen)


def node_config(dirname, name, port, sink, args, redis_port):
    # Without cluster mode, --split-limit gives each node half of the limit, as an operator
    # would have to for the limit to hold across both nodes.
    limit = args.max_connections
    if args.split_limit and not redis_port:
        limit = max(1, limit // 2)
    cluster = ""
    if redis_port:
        cluster = (
            f'[cluster]\nredis = "redis://127.0.0.1:{redis_port}/0"\nnode = "{name}"\n'
        )
    text = f"""hostname = "{name}.bench.test"
shards = 1
[[listeners]]
address = "127.0.0.1:{port}"
[spool]
path = "{dirname}/spool"
[log]
dir = "{dirname}/log"
[admin]
listen = ""
{cluster}[delivery]
max_connections = {limit}
[[routes]]
domain = "example.net"
hosts = ["127.0.0.1:{sink}"]
max_connections = {limit}
rate = "{args.rate}"
"""
    os.makedirs(dirname, exist_ok=True)
    path = os.path.join(dirname, "mta.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def stop(proc, limit=30):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_once(args, tmp, clustered, redis_port, index):
    base = os.path.join(tmp, f"run{index}")
    sink_port = free_port()
    sink = subprocess.Popen(
        [args.loadgen, "sink", "--listen", f"127.0.0.1:{sink_port}", "--count",
         str(args.messages)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(sink_port)
    nodes, ports = [], []
    for name in ("a", "b"):
        port = free_port()
        cfg = node_config(os.path.join(base, name), name, port, sink_port, args,
                          redis_port if clustered else None)
        nodes.append(subprocess.Popen([args.mta, "run", "--config", cfg],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ports.append(port)
    for p in ports:
        wait_port(p)
    redis_cmd(redis_port, "CONFIG", "RESETSTAT")
    start = time.time()
    half = args.messages // 2
    loads = [
        subprocess.Popen(
            [args.loadgen, "send", "--target", f"127.0.0.1:{p}", "-n", str(n), "-c",
             str(args.connections // 2), "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p, n in zip(ports, (half, args.messages - half))
    ]
    peak, done = 0, False
    while time.time() - start < args.deadline:
        peak = max(peak, sink_connections(sink_port))
        try:
            sink.wait(0.05)
            done = True
            break
        except subprocess.TimeoutExpired:
            pass
    elapsed = time.time() - start if done else args.deadline
    calls = redis_calls(redis_port)
    for p in loads + nodes:
        stop(p)
    stop(sink)
    shutil.rmtree(base, ignore_errors=True)
    if not done:
        raise SystemExit(f"run {index}: the sink did not get {args.messages} in time")
    return args.messages / elapsed, calls, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--max-connections", type=int, default=8)
    ap.add_argument("--rate", default="20000/s")
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--deadline", type=float, default=300)
    ap.add_argument("--split-limit", action="store_true",
                    help="without cluster mode, give each node half of --max-connections")
    args = ap.parse_args()
    args.mta = os.path.join(args.bin, "mta")
    args.loadgen = os.path.join(args.bin, "loadgen")
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(redis_bin):
        raise SystemExit("redis-server is missing: apt-get install -y redis-server")
    tmp = tempfile.mkdtemp(prefix="mta-cluster-bench-")
    redis_port = free_port()
    redis = subprocess.Popen(
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(redis_port)
        rates = {False: [], True: []}
        calls_per_msg = []
        split = " (no cluster: half on each node)" if args.split_limit else ""
        print(f"two nodes x 1 shard, {args.messages} messages of 4 KiB, "
              f"{args.connections} client connections, route limit "
              f"{args.max_connections} connections{split} and {args.rate}")
        for i in range(2 * args.runs):
            clustered = i % 2 == 1
            rate, calls, peak = run_once(args, tmp, clustered, redis_port, i)
            rates[clustered].append(rate)
            line = (f"run {i // 2 + 1} {'cluster' if clustered else 'local  '}: {rate:8.0f} msg/s,"
                    f" at most {peak} connections to the sink")
            if clustered:
                calls_per_msg.append(calls / args.messages)
                line += f", {calls} Redis commands ({calls / args.messages:.4f} per message)"
            print(line, flush=True)
        ratios = [c / l for c, l in zip(rates[True], rates[False])]
        print(f"no cluster: median {statistics.median(rates[False]):.0f} msg/s "
              f"(min {min(rates[False]):.0f}, max {max(rates[False]):.0f})")
        print(f"cluster:    median {statistics.median(rates[True]):.0f} msg/s "
              f"(min {min(rates[True]):.0f}, max {max(rates[True]):.0f})")
        print(f"ratio cluster / no cluster: median {statistics.median(ratios):.2f} "
              f"(runs {', '.join(f'{r:.2f}' for r in ratios)})")
        print(f"Redis commands per delivered message: "
              f"{statistics.median(calls_per_msg):.4f} (median)")
    finally:
        stop(redis)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
