#!/usr/bin/env python3
"""Runs the quota matrix (one process, many, a fleet budget); driven by scripts/bench-quota.sh.

Each case gets a fresh bundled emulator (loopback only) with the case's quota and latency, seeded
with N users; its processes are started side by side against it, and the figures come from the
emulator's own counts (GET /_emulator/stats and /_emulator/rates), not from the clients:

- wall / ideal: the case's wall time over the time the quota needs for N calls (N / Q, or the
  integral of a changing quota);
- quota used: calls the quota accepted over the calls it allowed during the wall time (its
  bucket's initial burst included, so 100 % is the ceiling);
- throttled: calls answered TooManyRequestsException over all calls that reached the quota.

Every case is run for cognito-resend and, where it applies, for scripts/boto3_resend.py (a boto3
thread pool in botocore's `adaptive` retry mode), in the same run. The fleet cases need the
worker's `--fleet-rate`; they are skipped, with a line saying so, while `backfill --help` does not
list it.
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request

QUOTA = 50
CLIENT_ID = "benchclient"


def case(name, tool, n, procs=1, conc=16, latency=0, quota=QUOTA, rate="0", schedule=None,
         state="none", fleet_rate=None, recover=None):
    return dict(name=name, tool=tool, n=n, procs=procs, conc=conc, latency=latency, quota=quota,
                rate=rate, schedule=schedule, state=state, fleet_rate=fleet_rate, recover=recover)


# The drop: 50/s, then 20/s for 20 s from 10 s on, then 50/s again.
DROP = [(0, 50), (10, 20), (30, 50)]
DROP_TEXT = ",".join(f"{t}s={q}" for t, q in DROP)


def matrix(n):
    """The cases, worker first then boto3 for each shape. `n` is N at quota 50 (about n/50 s)."""
    cases = []
    for conc, lat in [(16, 0), (64, 0), (16, 20), (64, 20)]:
        for tool in ("worker", "boto3"):
            cases.append(case(f"1 process, C={conc}, {lat} ms", tool, n, conc=conc, latency=lat))
    cases.append(case("1 process, C=16, 20 ms, --rate 40", "worker", n * 4 // 5, latency=20,
                      rate="40"))
    drop_n = n * 8 // 5
    for tool in ("worker", "boto3"):
        cases.append(case("quota 50 -> 20 for 20 s -> 50, C=16, 20 ms", tool, drop_n, latency=20,
                          schedule=DROP, recover=DROP[-1][0]))
    for tool in ("worker", "boto3"):
        cases.append(case("10 processes, C=16 each, 20 ms, no coordination", tool, n, procs=10,
                          latency=20))
    # The same over three times the users: how much of the case above is its finishing tail.
    for tool in ("worker", "boto3"):
        cases.append(case("10 processes, C=16 each, 20 ms, no coordination, 3x the users", tool,
                          n * 3, procs=10, latency=20))
    cases.append(case("10 processes sharing a SQLite ledger, --fleet-rate 50, quota 50",
                      "worker", n, procs=10, latency=20, state="shared", fleet_rate=50))
    cases.append(case("10 processes sharing a SQLite ledger, --fleet-rate 50, quota 30",
                      "worker", n * 3 // 5, procs=10, latency=20, quota=30, state="shared",
                      fleet_rate=50))
    return cases


def quota_at(c, t):
    if not c["schedule"]:
        return c["quota"]
    q = c["quota"]
    for offset, rps in c["schedule"]:
        if t >= offset:
            q = rps
    return q


def quota_available(c, wall):
    """Calls the quota allows in [0, wall]: the emulator's bucket starts full (one second's
    worth) and refills at the quota; each change of quota restarts it full at the new size."""
    step, total, t = 0.01, 0.0, 0.0
    while t < wall:
        total += quota_at(c, t) * min(step, wall - t)
        t += step
    steps = c["schedule"] or [(0, c["quota"])]
    return total + sum(q for offset, q in steps if offset < wall)


def ideal_wall(c):
    """The time the quota needs for N calls."""
    need, t, step = c["n"], 0.0, 0.01
    while need > 0:
        need -= quota_at(c, t) * step
        t += step
    return t


def http(url, method="GET"):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()


def start_emulator(args, c, work):
    out = open(os.path.join(work, "emulator.out"), "w")
    err = open(os.path.join(work, "emulator.err"), "w")
    proc = subprocess.Popen(
        [os.path.join(args.bin, "cognito-emulator"), "--listen", "127.0.0.1:0",
         "--seed", str(c["n"]), "--csv-out", os.path.join(work, "all.csv"),
         "--client-id", CLIENT_ID, "--latency", f"{c['latency']}ms", "--quota", str(c["quota"])],
        stdout=out, stderr=err)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(os.path.join(work, "emulator.out")) as f:
            line = f.readline()
        if line.startswith("listening on "):
            return proc, line.split()[-1]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    sys.exit(f"the emulator did not start: {open(os.path.join(work, 'emulator.err')).read()}")


def split_csv(work, procs):
    """One CSV per process, a slice each, so every user is one call whether or not the
    processes share a ledger (sharing one, they would each call again the users that got no
    code: the confirmed and the unknown, whose outcome the ledger does not hold back)."""
    with open(os.path.join(work, "all.csv")) as f:
        header, *rows = f.read().splitlines()
    paths = []
    for i in range(procs):
        part = rows[i::procs]
        path = os.path.join(work, f"users-{i}.csv")
        with open(path, "w") as f:
            f.write("\n".join([header, *part]) + "\n")
        paths.append(path)
    return paths


def command(args, c, endpoint, csv_path, i, work):
    if c["tool"] == "boto3":
        return [args.python, os.path.join(args.scripts, "boto3_resend.py"), csv_path,
                "--endpoint", endpoint, "--client-id", CLIENT_ID,
                "--concurrency", str(c["conc"]), "--retry-mode", "adaptive"]
    state = os.path.join(work, "ledger.db") if c["state"] == "shared" else "none"
    cmd = [os.path.join(args.bin, "cognito-resend"), "backfill", csv_path,
           "--client-id", CLIENT_ID, "--region", "us-east-1", "--cognito-endpoint", endpoint,
           "--concurrency", str(c["conc"]), "--rate", c["rate"], "--metrics-addr", "none",
           "--report", os.path.join(work, f"report-{i}.jsonl"), "--state", state, "-q"]
    if c["fleet_rate"] is not None:
        cmd += ["--fleet-rate", str(c["fleet_rate"])]
    return cmd


def run_case(args, c, work):
    os.makedirs(work, exist_ok=True)
    emu, endpoint = start_emulator(args, c, work)
    try:
        csvs = split_csv(work, c["procs"])
        # Line the schedule up with the start of the clients, and note where that falls among
        # the emulator's per-second counts.
        if c["schedule"]:
            text = ",".join(f"{t}s={q}" for t, q in c["schedule"])
            http(f"{endpoint}/_emulator/quota?schedule={urllib.request.quote(text)}", "POST")
        at_start = json.loads(http(f"{endpoint}/_emulator/rates"))["elapsed_s"]
        started = time.monotonic()
        limit = started + 5 * ideal_wall(c) + 60
        procs = []
        for i, path in enumerate(csvs):
            log = open(os.path.join(work, f"client-{i}.log"), "w")
            procs.append(subprocess.Popen(command(args, c, endpoint, path, i, work),
                                          stdout=log, stderr=subprocess.STDOUT))
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(timeout=max(1.0, limit - time.monotonic())))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        wall = time.monotonic() - started
        stats = json.loads(http(f"{endpoint}/_emulator/stats"))
        rates = json.loads(http(f"{endpoint}/_emulator/rates"))
        rates["clients_started_at_s"] = at_start
        with open(os.path.join(work, "rates.json"), "w") as f:
            json.dump(rates, f)
    finally:
        emu.send_signal(signal.SIGTERM)
        try:
            emu.wait(timeout=20)
        except subprocess.TimeoutExpired:
            emu.kill()
    accepted, throttled = stats["accepted"], stats["throttled"]
    r = dict(wall=wall, ideal=ideal_wall(c), accepted=accepted, throttled=throttled,
             used=accepted / quota_available(c, wall),
             throttled_share=throttled / max(1, accepted + throttled), codes=sorted(set(codes)),
             sends=stats["sends_total"], twice=stats["users_sent_more_than_once"], note="")
    if c["rate"] != "0":
        r["note"] = f"achieved {c['n'] / wall:.1f}/s for --rate {c['rate']}"
    if c["recover"] is not None:
        back = at_start + c["recover"]
        target = 0.9 * quota_at(c, c["recover"])
        # The first whole second after the quota returned in which the emulator accepted >= 90 %.
        full = [s for s in rates["seconds"]
                if s["second"] >= math.ceil(back) and s["accepted"] >= target]
        r["note"] = (f"back to >= 90 % in {full[0]['second'] + 1 - back:.0f} s" if full
                     else "never back to 90 % of the quota")
    if any(code not in (0, 1) for code in codes):
        r["note"] = (r["note"] + "; " if r["note"] else "") + f"exit codes {r['codes']}"
    return r


def has_fleet_rate(args):
    help_text = subprocess.run([os.path.join(args.bin, "cognito-resend"), "backfill", "--help"],
                               capture_output=True, text=True).stdout
    return "--fleet-rate" in help_text


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True, help="directory of the release binaries")
    p.add_argument("--python", required=True, help="Python with boto3")
    p.add_argument("--work", required=True)
    p.add_argument("--n", type=int, default=1000, help="N for the 50/s cases (default 1000)")
    p.add_argument("--only", help="run only the cases whose name contains this")
    p.add_argument("--client", choices=("worker", "boto3"), help="run only this client's cases")
    args = p.parse_args()
    args.scripts = os.path.dirname(os.path.abspath(__file__))
    fleet = has_fleet_rate(args)
    rows = []
    began = time.monotonic()
    for k, c in enumerate(matrix(args.n)):
        if args.only and args.only not in c["name"]:
            continue
        if args.client and args.client != c["tool"]:
            continue
        label = f"{c['name']} [{c['tool']}]"
        if c["fleet_rate"] is not None and not fleet:
            print(f"skipped: {label}: this cognito-resend has no --fleet-rate", file=sys.stderr)
            rows.append((c, None))
            continue
        print(f"running: {label}, N={c['n']}", file=sys.stderr, flush=True)
        r = run_case(args, c, os.path.join(args.work, f"case-{k}"))
        print(f"  wall {r['wall']:.1f} s (ideal {r['ideal']:.1f} s), accepted {r['accepted']}, "
              f"throttled {r['throttled']}, exit {r['codes']}", file=sys.stderr, flush=True)
        rows.append((c, r))
    print(f"bench took {time.monotonic() - began:.0f} s", file=sys.stderr)

    tool_name = {"worker": "cognito-resend", "boto3": "boto3 adaptive"}
    print("| case | client | N | wall / ideal | quota used | throttled | note |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for c, r in rows:
        head = f"| {c['name']} | {tool_name[c['tool']]} | {c['n']} |"
        if r is None:
            print(f"{head} skipped: no --fleet-rate | | | |")
            continue
        note = r["note"]
        if r["twice"]:
            note = (note + "; " if note else "") + f"{r['twice']} users got two codes"
        print(f"{head} {r['wall'] / r['ideal']:.2f}× | {100 * r['used']:.0f} % | "
              f"{100 * r['throttled_share']:.1f} % | {note} |")


if __name__ == "__main__":
    main()
