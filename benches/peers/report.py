#!/usr/bin/env python3
"""Prints the runs of compare.sh or accept.sh as Markdown: one table per scenario.

usage: report.py PEER UNIT ROWS.tsv "HEADER LINE"
  PEER    the other server's name (Postfix, smtp-sink)
  UNIT    what the rate counts (recipients delivered, messages accepted)
  ROWS    tab-separated, one line per run: scenario run peer_rate peer_cpu_us peer_pss_mib
          peer_complete mta_rate mta_cpu_us mta_pss_mib mta_complete
  HEADER  the date, machine, build and command, printed above the tables

Each table has a row per run and a last row with the medians (and the range of the ratio).
Only reads its input; prints to stdout.
"""

import statistics
import sys

SOURCES = {
    "pipelined": "`pipelined` (loadgen, PIPELINING, connections reused)",
    "lockstep": "`lockstep` (loadgen, a new connection per message, lock-step)",
    "smtp-source": "`smtp-source` (Postfix's, a new connection per message, lock-step)",
}


def title(scenario):
    src, size, rcpts = scenario.split(":")
    size = int(size)
    size = f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} bytes"
    who = "1 recipient" if rcpts == "1" else f"{rcpts} recipients"
    return f"{SOURCES.get(src, src)}, {size}, {who}"


def num(x):
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    peer, unit, path, header = sys.argv[1:]
    runs = {}
    with open(path) as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 10:
                continue
            sc = cols[0]
            runs.setdefault(sc, []).append(cols[1:])
    per = unit.split()[0].rstrip("s")
    print(header)
    for sc, rows in runs.items():
        print(f"\n#### {title(sc)}\n")
        print(f"| run | {peer}, {unit}/s | mta, {unit}/s | ratio | CPU per {per}, "
              f"{peer} / mta | peak PSS, {peer} / mta | complete, {peer} / mta |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        ratios, cols = [], {k: [] for k in ("pr", "pc", "pp", "mr", "mc", "mp")}
        for run, pr, pc, pp, pok, mr, mc, mp, mok in rows:
            pr, pc, pp, mr, mc, mp = map(float, (pr, pc, pp, mr, mc, mp))
            ratio = mr / pr if pr > 0 else 0.0
            ratios.append(ratio)
            for k, v in zip(cols, (pr, pc, pp, mr, mc, mp)):
                cols[k].append(v)
            print(f"| {run} | {num(pr)} | {num(mr)} | {ratio:.2f}x | {num(pc)} / {num(mc)} µs "
                  f"| {num(pp)} / {num(mp)} MiB | {pok} / {mok} |")
        med = {k: statistics.median(v) for k, v in cols.items()}
        print(f"| **median** | {num(med['pr'])} | {num(med['mr'])} "
              f"| **{statistics.median(ratios):.2f}x** ({min(ratios):.2f}-{max(ratios):.2f}x) "
              f"| {num(med['pc'])} / {num(med['mc'])} µs | {num(med['pp'])} / {num(med['mp'])} MiB | |")


if __name__ == "__main__":
    main()
