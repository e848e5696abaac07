#!/usr/bin/env python3
"""The bulk rate of one destination with and without a trickle of transactional mail.

Starts a counting SMTP receiver (in this script, on a free loopback port) and, per run, one
`mta` (one shard) whose route to the receiver has 1 connection and a message rate. Delivery is
held while a bulk backlog is submitted (sender domain news.test, placed in class `bulk` by
`[priority] senders`); then delivery resumes and, in a run with a trickle, a transactional
message (`X-Priority-Class: transactional` from loopback, a trusted network) is submitted every
`--every` seconds. It counts, over the measured window, the bulk and transactional messages the
receiver got per second, and for each transactional message how many bulk transactions arrived
between its `250` and its arrival. Runs alternate without / with the trickle.

Usage: benches/priority.py [--runs 3] [--rate 200/s] [--seconds 10] [--every 0.1]
                           [--backlog 600] [--bin target/release]
Everything it starts is stopped by PID; all traffic stays on 127.0.0.1.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
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


class Receiver:
    """Accepts everything; logs (time, sender) per transaction, in arrival order."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.log = []
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = conn.makefile("rb")
        conn.sendall(b"220 sink.test\r\n")
        sender, in_data = "", False
        for line in f:
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    with self.lock:
                        self.log.append((time.time(), sender))
                    conn.sendall(b"250 ok\r\n")
                continue
            upper = line.upper()
            if upper.startswith(b"EHLO"):
                conn.sendall(b"250-sink.test\r\n250 PIPELINING\r\n")
            elif upper.startswith(b"MAIL FROM:"):
                sender = line[10:].strip().strip(b"<>").decode()
                conn.sendall(b"250 ok\r\n")
            elif upper.startswith(b"DATA"):
                in_data = True
                conn.sendall(b"354 go\r\n")
            elif upper.startswith(b"QUIT"):
                conn.sendall(b"221 bye\r\n")
                break
            else:
                conn.sendall(b"250 ok\r\n")
        conn.close()


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
        self.reply()
        self.s.sendall(b"EHLO bench.test\r\n")
        self.reply()

    def reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise SystemExit("the MTA closed the connection")
            if line[3:4] != b"-":
                return line

    def send(self, sender, rcpts, header=b""):
        cmd = f"MAIL FROM:<{sender}>\r\n".encode()
        cmd += b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts) + b"DATA\r\n"
        self.s.sendall(cmd)
        for _ in range(len(rcpts) + 2):
            self.reply()
        self.s.sendall(header + b"Subject: bench\r\n\r\n" + b"x" * 1000 + b"\r\n.\r\n")
        r = self.reply()
        if not r.startswith(b"250"):
            raise SystemExit(f"refused: {r!r}")


def config(dirname, port, admin, sink, args):
    text = f"""hostname = "bench.test"
shards = 1
[[listeners]]
address = "127.0.0.1:{port}"
[spool]
path = "{dirname}/spool"
[log]
dir = "{dirname}/log"
[admin]
listen = "127.0.0.1:{admin}"
[delivery]
hold = true
max_recipients_per_transaction = 10
max_messages_per_connection = 1000000
[[routes]]
domain = "h.test"
hosts = ["127.0.0.1:{sink}"]
max_connections = 1
rate = "{args.rate}"
[priority]
header = "X-Priority-Class"
senders = [{{ domain = "news.test", class = "bulk" }}]
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


def run_once(args, tmp, trickle, index):
    base = os.path.join(tmp, f"run{index}")
    rx = Receiver()
    port, admin = free_port(), free_port()
    cfg = config(base, port, admin, rx.port, args)
    mta = subprocess.Popen([args.mta, "run", "--config", cfg],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        c = Client(port)
        for m in range(args.backlog):
            c.send("list@news.test", [f"m{m}r{r}@h.test" for r in range(100)])
        subprocess.run([args.mta, "delivery", "resume", "--config", cfg], check=True,
                       stdout=subprocess.DEVNULL)
        start = time.time()
        warm, end = start + 2.0, start + 2.0 + args.seconds
        sent = []  # (log length when its 250 came, time)
        t = Client(port)
        while time.time() < end:
            if trickle and time.time() >= warm:
                t.send("reset@app.test", ["user@h.test"], b"X-Priority-Class: transactional\r\n")
                with rx.lock:
                    sent.append(len(rx.log))
                time.sleep(args.every)
            else:
                time.sleep(0.05)
        time.sleep(1.0)
        with rx.lock:
            log = list(rx.log)
    finally:
        stop(mta)
        rx.sock.close()
        shutil.rmtree(base, ignore_errors=True)
    window = [s for (at, s) in log if warm <= at < end]
    bulk = sum(1 for s in window if s == "list@news.test") / args.seconds
    trans = sum(1 for s in window if s == "reset@app.test") / args.seconds
    positions = [i for i, (_, s) in enumerate(log) if s == "reset@app.test"]
    # Bulk transactions that arrived between a reset's 250 and the reset itself.
    waits = [sum(1 for _, s in log[n:p] if s == "list@news.test")
             for p, n in zip(positions, sent)]
    if len(log) >= args.backlog * 10:
        raise SystemExit("the backlog drained during the run: raise --backlog")
    return bulk, trans, waits


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", default="200/s")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=0.1)
    ap.add_argument("--backlog", type=int, default=600, help="messages of 100 recipients")
    ap.add_argument("--bin", default="target/release")
    args = ap.parse_args()
    args.mta = os.path.join(args.bin, "mta")
    tmp = tempfile.mkdtemp(prefix="mta-priority-bench-")
    rates = {False: [], True: []}
    print(f"1 shard, route limit 1 connection and {args.rate}, bulk backlog "
          f"{args.backlog} x 100 recipients (10 per transaction), window {args.seconds}s, "
          f"trickle: one transactional message every {args.every}s")
    try:
        for i in range(2 * args.runs):
            trickle = i % 2 == 1
            bulk, trans, waits = run_once(args, tmp, trickle, i)
            rates[trickle].append(bulk)
            line = (f"run {i // 2 + 1} {'trickle' if trickle else 'bulk   '}: bulk "
                    f"{bulk:6.1f} msg/s, transactional {trans:5.1f} msg/s, total "
                    f"{bulk + trans:6.1f}")
            if waits:
                line += (f"; bulk transactions between a reset's 250 and its arrival: "
                         f"median {statistics.median(waits)}, max {max(waits)}")
            print(line, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    a, b = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"median bulk rate: {a:.1f} msg/s alone, {b:.1f} msg/s with the trickle "
          f"(ratio {b / a:.3f})")


if __name__ == "__main__":
    main()
