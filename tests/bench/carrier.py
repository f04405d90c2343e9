#!/usr/bin/env python3
"""tests/bench/carrier.py - the carrier pattern (issue 13), part of `make bench`.

N orders (default 10,000) each park at a mid-cycle webhook with `early` set;
each gets one carrier callback, half of them sent before their order (kept by
`early`, delivered at the park), half after the order's 202 (matched directly).
Connections run at full rate (no pacing).  Checks that every callback was
delivered exactly once (each transaction ran twice, its `delivered` counter is
1, nothing is left kept, nothing expired), and reports throughput and
latency percentiles.  Prints `key=value` lines and a markdown section.

    python3 tests/bench/carrier.py BINARY [N] [CONNS] > section.md
"""

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

CYCLE = """local hw = require "hookwork"
return hw.cycle {
  name = "carrier",
  steps = {
    hw.webhook { name = "order", fields = { order_id = "string" } },
    hw.step { name = "book", run = function(tx) tx.data.booked = true end },
    hw.webhook { name = "tracking", match = "order_id", early = 600, resume_with = "latest",
                 fields = { order_id = "string", status = "string" } },
    hw.step { name = "deliver", run = function(tx)
      tx.data.delivered = (tx.data.delivered or 0) + 1
    end },
  },
}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


async def post(reader, writer, path, body):
    data = json.dumps(body).encode()
    writer.write(b"POST %s HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
    t0 = time.perf_counter()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    payload = await reader.readexactly(n) if n else b""
    return status, payload, time.perf_counter() - t0


async def worker(port, ids, order_path, track_path, lat, bad):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in ids:
        oid = "C%d" % i
        early = i % 2 == 0
        steps = [("cb", track_path, {"order_id": oid, "status": "Collected"}),
                 ("order", order_path, {"order_id": oid})]
        if not early:
            steps.reverse()
        for kind, path, body in steps:
            status, payload, dt = await post(reader, writer, path, body)
            key = kind if kind == "order" else ("cb_before" if early else "cb_after")
            lat[key].append(dt)
            want = {"order": b'"transaction"', "cb_before": b'"buffered":true',
                    "cb_after": b'"transaction"'}[key]
            if status != 202 or want not in payload:
                bad.append((oid, key, status, payload[:200]))
    writer.close()


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    tmp = tempfile.mkdtemp(prefix="hookwork-bench-carrier-")
    os.makedirs(os.path.join(tmp, "cycles"))
    with open(os.path.join(tmp, "cycles", "carrier.lua"), "w") as f:
        f.write(CYCLE)
    port, admin = free_port(), free_port()
    env = dict(os.environ)
    env.pop("HOOKWORK_ADMIN_TOKEN", None)
    log = open(os.path.join(tmp, "engine.log"), "wb")
    proc = subprocess.Popen([binary, "run", "--cycles", os.path.join(tmp, "cycles"),
                             "--data", os.path.join(tmp, "var"), "--listen", "127.0.0.1:%d" % port,
                             "--admin", "127.0.0.1:%d" % admin], stdout=log, stderr=log, env=env)
    try:
        base = "http://127.0.0.1:%d" % admin
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        cycles = json.load(urllib.request.urlopen(base + "/api/cycles", timeout=5))
        hooks = {w["step"]: w["url"] for c in cycles if c["name"] == "carrier" for w in c["webhooks"]}
        path = lambda u: "/" + u.split("/", 3)[3]
        lat = {"order": [], "cb_before": [], "cb_after": []}
        bad = []
        slices = [list(range(k, n, conns)) for k in range(conns)]
        t0 = time.perf_counter()

        async def run():
            await asyncio.gather(*(worker(port, s, path(hooks["order"]), path(hooks["tracking"]), lat, bad)
                                   for s in slices))
        asyncio.run(run())
        elapsed = time.perf_counter() - t0
        # every run ends: wait until no job and no kept request is left
        db = os.path.join(tmp, "var", "hookwork.db")
        deadline = time.time() + 120
        while time.time() < deadline:
            c = sqlite3.connect(db, timeout=10)
            left = c.execute("SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM early)"
                             " + (SELECT count(*) FROM tx WHERE state = 'running')").fetchone()[0]
            c.close()
            if left == 0:
                break
            time.sleep(0.2)
        drained = time.perf_counter() - t0 - elapsed
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        rss = 0
        with open("/proc/%d/status" % proc.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1]) // 1024
        proc.terminate()
        proc.wait(30)
        c = sqlite3.connect(db)
        rows = c.execute("SELECT runs, state, json_extract(data, '$.delivered'),"
                         " json_extract(data, '$.status') FROM tx").fetchall()
        hist_runs = c.execute("SELECT count(*) FROM hist h, json_each(h.entries) e"
                              " WHERE e.value ->> 0 = 'deliver'").fetchone()[0]
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)

    exact = sum(1 for r in rows if r[0] == 2 and r[1] == "waiting" and r[2] == 1 and r[3] == "Collected")
    expired = 0.0
    for line in metrics.splitlines():
        if line.startswith("hookwork_buffered_expired_total{"):
            expired += float(line.rsplit(" ", 1)[1])
    reqs = 2 * n
    alll = lat["order"] + lat["cb_before"] + lat["cb_after"]
    r = {
        "carrier.n": n, "carrier.conns": conns, "carrier.requests": reqs,
        "carrier.seconds": "%.2f" % elapsed, "carrier.rps": "%.0f" % (reqs / elapsed),
        "carrier.p50": "%.2f" % (1000 * pct(alll, 50)), "carrier.p99": "%.2f" % (1000 * pct(alll, 99)),
        "carrier.order_p99": "%.2f" % (1000 * pct(lat["order"], 99)),
        "carrier.before_p99": "%.2f" % (1000 * pct(lat["cb_before"], 99)),
        "carrier.after_p99": "%.2f" % (1000 * pct(lat["cb_after"], 99)),
        "carrier.bad": len(bad), "carrier.tx": len(rows), "carrier.exact": exact,
        "carrier.deliver_steps": hist_runs, "carrier.expired": "%d" % expired,
        "carrier.drain": "%.2f" % drained, "carrier.rss": rss,
    }
    for k, v in r.items():
        print("%s=%s" % (k, v), file=sys.stderr)
    ok = (len(bad) == 0 and len(rows) == n and exact == n and hist_runs == n and expired == 0)
    r["carrier.ok"] = "yes" if ok else "no"
    print("## The carrier pattern (issue 13): early arrivals at full rate, %s" %
          time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()))
    print()
    print("- %d orders, each parking at a mid-cycle webhook with `early = 600` and"
          " `resume_with = \"latest\"`; one carrier callback per order, half sent before the order"
          " (kept, delivered at the park), half after its 202 (matched directly); %d keep-alive"
          " connections at full rate (asyncio client, no pacing), %d requests in all;"
          " latency is the client's, request sent to answer read" % (n, conns, reqs))
    print()
    print("| requests | seconds | req/s | p50 ms | p99 ms | p99 order | p99 callback before | p99 callback after | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("| %d | %s | **%s** | %s | **%s** | %s | %s | %s | %d |" % (
        reqs, r["carrier.seconds"], r["carrier.rps"], r["carrier.p50"], r["carrier.p99"],
        r["carrier.order_p99"], r["carrier.before_p99"], r["carrier.after_p99"], rss))
    print()
    print("Exactly once: %d of %d transactions ran twice and hold `delivered = 1` from the callback;"
          " %d `deliver` steps in all histories; %d unexpected answers; kept requests dropped"
          " by expiry: %s; the last runs ended %s s after the last answer. Every callback delivered"
          " exactly once: **%s**." % (exact, n, hist_runs, len(bad), r["carrier.expired"],
                                       r["carrier.drain"], r["carrier.ok"]))
    if bad:
        print()
        print("First unexpected answers: `%r`" % (bad[:3],))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
