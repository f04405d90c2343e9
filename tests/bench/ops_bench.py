#!/usr/bin/env python3
"""Operations on stored work, measured with a million transactions in the
store (`make bench`, part "ops"; never in `make test`).

1. A store is filled directly (python sqlite3, on the engine's own schema):
   N_OLD completed transactions that ended 30 days ago and N_NEW waiting
   ones (each parked with a distinct match value, with a customer e-mail in
   data), with history rows and stored requests like the engine writes.
2. The engine runs on it with keep = {completed = 100000} (no purge):
   latency of GET /api/transactions?match=, ?q= (array and page=1), a time
   range, /api/cycles (counts over every row), and webhook p99 with and
   without admin reads hammering the reader thread.
3. The cycle file is saved with the default keep (14 days): the purge of
   the N_OLD old ones starts; webhook p99 while it runs, and how long it
   takes.
Prints one line per figure (RESULT name value unit).
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "hookwork")
N_OLD = int(os.environ.get("OPS_OLD", "500000"))
N_NEW = int(os.environ.get("OPS_NEW", "500000"))
LOAD_SECONDS = float(os.environ.get("OPS_LOAD_SECONDS", "10"))
LOAD_THREADS = int(os.environ.get("OPS_LOAD_THREADS", "4"))

CYCLE = """local hw = require "hookwork"
return hw.cycle {
  name = "bench",%s
  steps = {
    hw.webhook { name = "in" },
    hw.webhook { name = "status", match = "ref" },
  },
}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def result(name, value, unit):
    print("RESULT %s %s %s" % (name, value, unit), flush=True)


class Engine:
    def __init__(self, tmp):
        self.tmp = tmp
        self.cycles = os.path.join(tmp, "cycles")
        self.data = os.path.join(tmp, "var")
        os.makedirs(self.cycles, exist_ok=True)
        self.port, self.aport = free_port(), free_port()
        self.proc = None

    def write(self, keep):
        with open(os.path.join(self.cycles, "bench.lua"), "w") as f:
            f.write(CYCLE % keep)

    def start(self):
        log = open(os.path.join(self.tmp, "engine.log"), "ab")
        self.proc = subprocess.Popen([BIN, "run", "--cycles", self.cycles, "--data", self.data,
                                      "--listen", "127.0.0.1:%d" % self.port,
                                      "--admin", "127.0.0.1:%d" % self.aport],
                                     stdout=log, stderr=log)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("engine did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)

    def get(self, path, timeout=120):
        c = http.client.HTTPConnection("127.0.0.1", self.aport, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body


def fill(db_path, hook_token):
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA synchronous=OFF")
    now = time.time()
    req = json.dumps({"method": "POST", "path": "/hooks/" + hook_token, "query": {},
                      "headers": {"content-type": "application/json", "host": "127.0.0.1",
                                  "user-agent": "bench"},
                      "body": '{"ref":"R-0"}', "ip": "127.0.0.1", "received": now})

    def rows():
        for i in range(1, N_OLD + N_NEW + 1):
            data = json.dumps({"ref": "R-%d" % i, "customer": {"email": "c%d@example.com" % i}})
            if i <= N_OLD:
                t = now - 30 * 86400 + i * 0.001
                yield (i, "bench", "completed", "in", data, t, t + 0.01, 1, None, None, None, None, req)
            else:
                t = now - 3600 + (i - N_OLD) * 0.001
                yield (i, "bench", "waiting", "status", data, t, t + 0.01, 1, "status", "R-%d" % i, t, data, req)

    db.execute("BEGIN")
    db.executemany("INSERT INTO tx(id, cycle, state, step, data, created, updated, runs,"
                   " wait_step, match_value, parked_at, snapshot, request)"
                   " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)", rows())
    entries = '[["in",1,2,"ok",null,null]]'
    db.executemany("INSERT INTO hist(tx, seq, run, entries) VALUES(?,?,1,?)",
                   ((i, i, entries) for i in range(1, N_OLD + N_NEW + 1)))
    db.execute("COMMIT")
    db.close()


def timed(e, path, n=5):
    times = []
    body = None
    for _ in range(n):
        t0 = time.perf_counter()
        status, body = e.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise SystemExit("%s -> %s %s" % (path, status, body[:200]))
    times.sort()
    return times[len(times) // 2], body


def load(e, hook_path, seconds, extra=None):
    """Fire-and-forget webhook requests from LOAD_THREADS keep-alive clients;
    returns the latencies in ms.  `extra` runs meanwhile in its own thread."""
    lat, stop = [], time.time() + seconds
    lock = threading.Lock()

    def client():
        c = http.client.HTTPConnection("127.0.0.1", e.port, timeout=30)
        mine = []
        k = 0
        while time.time() < stop:
            k += 1
            body = json.dumps({"ref": "L-%d-%d" % (threading.get_ident(), k)})
            t0 = time.perf_counter()
            c.request("POST", hook_path, body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            mine.append((time.perf_counter() - t0) * 1000)
            if r.status != 202:
                raise SystemExit("webhook -> %d" % r.status)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(LOAD_THREADS)]
    if extra:
        threads.append(threading.Thread(target=extra, args=(stop,), daemon=True))
    for t in threads:
        t.start()
    for t in threads[:LOAD_THREADS]:
        t.join()
    lat.sort()
    return lat


def pct(lat, p):
    return lat[min(len(lat) - 1, int(len(lat) * p))]


def main():
    tmp = tempfile.mkdtemp(prefix="hookwork-ops-bench-")
    try:
        e = Engine(tmp)
        e.write("\n  keep = { completed = 100000 },")
        e.start()
        cyc = json.loads(e.get("/api/cycles")[1])
        hook = [w for c in cyc if c["name"] == "bench" for w in c["webhooks"] if w["step"] == "in"][0]
        hook_path = "/" + hook["url"].split("/", 3)[3]
        e.stop()
        t0 = time.time()
        fill(os.path.join(e.data, "hookwork.db"), hook_path.rsplit("/", 1)[1])
        result("ops_fill_seconds", "%.1f" % (time.time() - t0), "s")
        result("ops_store_rows", N_OLD + N_NEW, "transactions")
        result("ops_store_mib", "%.0f" % (os.path.getsize(os.path.join(e.data, "hookwork.db")) / 2**20), "MiB")
        e.start()
        mid = N_OLD + N_NEW // 2
        ms, body = timed(e, "/api/transactions?match=R-%d" % mid)
        assert json.loads(body)[0]["id"] == str(mid), body[:200]
        result("ops_match_ms", "%.1f" % ms, "ms")
        ms, body = timed(e, "/api/transactions?q=customer.email=c%d@example.com&limit=1" % mid, 3)
        assert json.loads(body)[0]["id"] == str(mid), body[:200]
        result("ops_q_array_250k_deep_ms", "%.0f" % ms, "ms")
        ms, body = timed(e, "/api/transactions?q=customer.email=c%d@example.com&page=1&limit=1" % mid, 3)
        result("ops_q_page_window_ms", "%.0f" % ms, "ms")
        ms, _ = timed(e, "/api/transactions?q=customer.email=nobody@example.com&since=%d&limit=10"
                      % int(time.time() - 600), 3)
        result("ops_q_last_10min_ms", "%.0f" % ms, "ms")
        ms, _ = timed(e, "/api/transactions?cycle=bench&state=waiting&limit=100&page=1")
        result("ops_list_cycle_state_ms", "%.1f" % ms, "ms")
        ms, _ = timed(e, "/api/cycles", 3)
        result("ops_counts_1m_ms", "%.0f" % ms, "ms")
        base = load(e, hook_path, LOAD_SECONDS)
        result("ops_webhook_p50_ms", "%.2f" % pct(base, 0.5), "ms")
        result("ops_webhook_p99_ms", "%.2f" % pct(base, 0.99), "ms")
        result("ops_webhook_rps", "%.0f" % (len(base) / LOAD_SECONDS), "req/s")

        def hammer(stop):
            n = 0
            while time.time() < stop:
                e.get("/api/cycles")
                e.get("/api/transactions?q=customer.email=x@y&page=1&limit=5")
                n += 2
            result("ops_admin_reads_during_load", n, "requests")

        busy = load(e, hook_path, LOAD_SECONDS, hammer)
        result("ops_webhook_p99_admin_reads_ms", "%.2f" % pct(busy, 0.99), "ms")
        # the purge: back to the default keep (14 days), saved like an edit
        e.write("")
        t0 = time.time()
        time.sleep(1.5)
        purge = load(e, hook_path, LOAD_SECONDS)
        result("ops_webhook_p99_purge_ms", "%.2f" % pct(purge, 0.99), "ms")
        result("ops_webhook_p50_purge_ms", "%.2f" % pct(purge, 0.5), "ms")
        result("ops_webhook_rps_purge", "%.0f" % (len(purge) / LOAD_SECONDS), "req/s")
        while True:
            c = [x for x in json.loads(e.get("/api/cycles")[1]) if x["name"] == "bench"][0]
            left = c["counts"]["completed"]
            if left <= len(base) + len(busy) + len(purge) or time.time() - t0 > 900:
                break
            time.sleep(2)
        result("ops_purge_seconds", "%.0f" % (time.time() - t0), "s")
        result("ops_purge_rate", "%.0f" % (N_OLD / max(1e-9, time.time() - t0)), "tx/s")
        e.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
