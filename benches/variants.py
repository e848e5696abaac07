#!/usr/bin/env python3
"""mta against itself in other configurations: `loadgen bench` runs, alternating, one table.

usage: benches/variants.py PRESET [-n N] [-r ROUNDS] [-m MTA] [-g LOADGEN] [-- BENCH ARGS...]
  PRESET  dkim    unsigned, Ed25519-signed and RSA-2048-signed relay (keys made with openssl in
                  a temporary directory), then `openssl speed rsa2048` for what a core signs
          shards  the default shard count (one per core) against one shard
  -n N       messages per run (default 40000: shorter runs quantize the rate)
  -r ROUNDS  rounds; each round runs every variant once, in order (default 5)
  -m, -g     the mta and loadgen binaries (default target/release/)
  BENCH ARGS more `loadgen bench` arguments for every run (e.g. --size 102400)

Each run is `loadgen bench -n N --json FILE` (a fresh sink and mta, 4 KiB, 50 connections,
sync always, pipelined relay on loopback). A variant's ratio is taken round by round against
the first variant's run of the same round, so that the machine's drift falls on both; the
table gives the median with the range. CPU and peak RSS are the MTA's, from the card.
Prints each run as it ends, then the Markdown table that docs/BENCHMARKS.md quotes.
Loopback only; every run is bounded by loadgen's own deadline.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dkim_section(key, algorithm):
    return f"""
[dkim]
enabled = true
sign = "all"
default_domain = "loadgen.test"
[[dkim.keys]]
domain = "loadgen.test"
selector = "bench"
algorithm = "{algorithm}"
key_file = "{key}"
"""


def preset(name, tmp):
    """[(variant name, extra loadgen bench args)]"""
    if name == "shards":
        return [(f"{os.cpu_count()} shards (the default)", []), ("1 shard", ["--shards", "1"])]
    if name == "dkim":
        out = [("unsigned", [])]
        for label, alg, gen in (
            ("Ed25519", "ed25519-sha256", ["-algorithm", "ED25519"]),
            ("RSA-2048", "rsa-sha256", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        ):
            key = os.path.join(tmp, f"{alg}.pem")
            subprocess.run(["openssl", "genpkey", *gen, "-out", key], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            extra = os.path.join(tmp, f"{alg}.toml")
            with open(extra, "w") as f:
                f.write(dkim_section(key, alg))
            out.append((label, ["--mta-config-extra", extra]))
        return out
    sys.exit(f"unknown preset {name}: dkim or shards")


def openssl_rsa_signs():
    """RSA-2048 signatures per second on one core, as `openssl speed` counts them."""
    r = subprocess.run(["openssl", "speed", "-seconds", "3", "rsa2048"], capture_output=True,
                       text=True, check=True)
    for line in r.stdout.splitlines():
        cols = line.split()
        # "rsa 2048 bits 0.000251s 0.000007s 3984.1 140000.0" (sign/s is the 5th field)
        if len(cols) >= 7 and cols[0] == "rsa" and cols[1] == "2048":
            return float(cols[5])
    return None


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, Linux {os.uname().release}"


def tree():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("preset")
    ap.add_argument("-n", type=int, default=40000)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("-m", default=os.path.join(ROOT, "target/release/mta"))
    ap.add_argument("-g", default=os.path.join(ROOT, "target/release/loadgen"))
    ap.add_argument("bench", nargs="*")
    a = ap.parse_args()
    for b in (a.m, a.g):
        if not os.access(b, os.X_OK):
            sys.exit("build first: cargo build --release -p mta -p loadgen (or give -m and -g)")
    with tempfile.TemporaryDirectory() as tmp:
        variants = preset(a.preset, tmp)
        runs = {v: [] for v, _ in variants}
        card = os.path.join(tmp, "card.json")
        for rnd in range(1, a.r + 1):
            for v, extra in variants:
                cmd = [a.g, "bench", "-n", str(a.n), "--mta", a.m, "--quiet", "--json", card,
                       *extra, *a.bench]
                if os.path.exists(card):
                    os.remove(card)
                ok = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode == 0
                if not os.path.exists(card):
                    sys.exit(f"round {rnd} {v}: loadgen bench wrote no card: {shlex.join(cmd)}")
                with open(card) as f:
                    c = json.load(f)
                # CPU is null on the card when nothing was delivered.
                run = (c["delivered_per_s"], (c["mta_cpu_s_per_1000"] or 0.0) * 1000.0,
                       (c["mta_peak_rss_kib"] or 0) / 1024.0, ok and c["complete"])
                runs[v].append(run)
                print(f"round {rnd} {v}: {run[0]:,.0f} delivered msg/s, {run[1]:.0f} µs of CPU "
                      f"per message, peak RSS {run[2]:.0f} MiB, complete={run[3]}", flush=True)
        signs = openssl_rsa_signs() if a.preset == "dkim" else None
    base = runs[variants[0][0]]
    print()
    args = " ".join(shlex.quote(x) for x in sys.argv[1:])
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}; {machine()}; mta tree {tree()}; "
          f"`benches/variants.py {args}`\n")
    print(f"| variant | delivered msg/s, each round | median | ratio to {variants[0][0]} "
          "(median of the rounds, range) | MTA CPU per message | peak RSS | complete |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for v, _ in variants:
        rs = runs[v]
        ratios = [r[0] / b[0] for r, b in zip(rs, base) if b[0] > 0]
        rates = ", ".join(f"{r[0]:,.0f}" for r in rs)
        print(f"| {v} | {rates} | {statistics.median(r[0] for r in rs):,.0f} "
              f"| **{statistics.median(ratios):.2f}x** ({min(ratios):.2f}-{max(ratios):.2f}x) "
              f"| {statistics.median(r[1] for r in rs):.0f} µs "
              f"| {statistics.median(r[2] for r in rs):.0f} MiB "
              f"| {'yes' if all(r[3] for r in rs) else 'no'} |")
    if signs:
        rsa = statistics.median(r[1] for r in runs["RSA-2048"])
        plain = statistics.median(r[1] for r in base)
        per_sig = rsa - plain
        print(f"\n`openssl speed -seconds 3 rsa2048` on this host: {signs:,.0f} signatures/s on one "
              f"core ({1e6 / signs:.0f} µs each). The MTA's CPU per RSA-signed message is "
              f"{per_sig:.0f} µs above unsigned: it signs at **{(1e6 / signs) / per_sig:.0%}** of "
              f"OpenSSL's speed per core.")


if __name__ == "__main__":
    main()
