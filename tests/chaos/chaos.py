#!/usr/bin/env python3
"""make chaos: kill -9 and SIGTERM at random moments under full load.

Clients post without pause to a fire-and-forget cycle (202) and a
synchronous one (200 from its respond step), each request carrying a unique
n, and record every answer.  ROUNDS times the engine is killed with SIGKILL
at a random moment and started again at once; then TERM_ROUNDS times it is
stopped with SIGTERM and started again.  At the end the engine works through
what it holds, and the store is read directly:
  lost        acknowledged (202/200) but not stored
  duplicated  stored more than once (any n)
  incomplete  acknowledged but not completed
  lies        answered 503 but stored
All four must be 0.  Totals are printed on one line (docs/BENCHMARKS.md).

Environment: CHAOS_ROUNDS (20), CHAOS_TERM_ROUNDS (5), CHAOS_CLIENTS (8),
CHAOS_SEED, HOOKWORK_BIN."""

import json
import os
import random
import signal
import sqlite3
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from lib import Engine, http_request  # noqa: E402

CYCLES = {
    "ff.lua": """local hw = require "hookwork"
return hw.cycle { name = "ff", steps = {
  hw.webhook { name = "in", fields = { n = "integer" } },
  hw.step { name = "a", run = function(tx) tx.data.a = true end },
  hw.step { name = "b", run = function(tx) tx.data.b = true end } } }
""",
    "sy.lua": """local hw = require "hookwork"
return hw.cycle { name = "sy", steps = {
  hw.webhook { name = "in", fields = { n = "integer" } },
  hw.step { name = "a", run = function(tx) tx.data.a = true end },
  hw.respond { body = function(tx) return { n = tx.data.n } end } } }
""",
}


class Clients:
    def __init__(self, urls, n):
        self.urls = urls
        self.acked = {"ff": set(), "sy": set()}
        self.refused = {"ff": set(), "sy": set()}
        self.unknown = 0
        self.sent = 0
        self._k = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ts = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def _run(self, i):
        cycle = "ff" if i % 2 == 0 else "sy"
        while not self._stop.is_set():
            with self._lock:
                self._k += 1
                k = self._k
                self.sent += 1
            u = urllib.parse.urlsplit(self.urls[cycle])
            try:
                r = http_request(u.hostname, u.port, "POST", u.path, body=json.dumps({"n": k}).encode(),
                                 headers={"Content-Type": "application/json"}, timeout=30)
                status = r.status
            except Exception:  # noqa: BLE001 - the engine was killed under us
                status = None
            with self._lock:
                if status in (200, 202):
                    self.acked[cycle].add(k)
                elif status == 503:
                    self.refused[cycle].add(k)
                else:
                    self.unknown += 1
            if status is None or status == 503:
                time.sleep(0.02)

    def start(self):
        for t in self._ts:
            t.start()

    def stop(self):
        self._stop.set()
        for t in self._ts:
            t.join(60)


def main():
    rounds = int(os.environ.get("CHAOS_ROUNDS", "20"))
    term_rounds = int(os.environ.get("CHAOS_TERM_ROUNDS", "5"))
    seed = int(os.environ.get("CHAOS_SEED", str(int(time.time()))))
    rnd = random.Random(seed)
    t_start = time.time()
    e = Engine(CYCLES, env={"HOOKWORK_GRACE": "2"})
    with e:
        e.start()
        urls = {"ff": e.hook_url("ff", "in"), "sy": e.hook_url("sy", "in")}
        cl = Clients(urls, int(os.environ.get("CHAOS_CLIENTS", "8")))
        cl.start()
        term_codes = []
        for i in range(rounds + term_rounds):
            time.sleep(rnd.uniform(0.3, 2.5))
            if i < rounds:
                e.kill()
            else:
                term_codes.append(e.stop(timeout=30))
            e.start(wait=False)
            e.wait_healthy(timeout=60)
            print("round %d/%d (%s): %d acknowledged so far" % (
                i + 1, rounds + term_rounds, "kill -9" if i < rounds else "SIGTERM",
                len(cl.acked["ff"]) + len(cl.acked["sy"])), flush=True)
        time.sleep(1)
        cl.stop()
        db = os.path.join(e.data_dir, "hookwork.db")

        def busy():
            con = sqlite3.connect(db, timeout=10)
            try:
                return con.execute("SELECT (SELECT count(*) FROM tx WHERE state = 'running'),"
                                   " (SELECT count(*) FROM jobs)").fetchone()
            finally:
                con.close()
        deadline = time.time() + 300
        while busy() != (0, 0) and time.time() < deadline:
            time.sleep(0.5)
        code = e.stop(timeout=60)
        con = sqlite3.connect(db)
        rows = con.execute("SELECT cycle, json_extract(data, '$.n'), state FROM tx").fetchall()
        con.close()
    stored = {"ff": {}, "sy": {}}
    duplicated = 0
    for cycle, n, state in rows:
        if cycle not in stored:
            continue
        if n in stored[cycle]:
            duplicated += 1
        stored[cycle][n] = state
    acked = sum(len(v) for v in cl.acked.values())
    lost = sum(1 for c in cl.acked for n in cl.acked[c] if n not in stored[c])
    incomplete = sum(1 for c in cl.acked for n in cl.acked[c] if stored[c].get(n) not in (None, "completed"))
    lies = sum(1 for c in cl.refused for n in cl.refused[c] if n in stored[c])
    refused = sum(len(v) for v in cl.refused.values())
    print("chaos: seed %d, %d kill -9 + %d SIGTERM rounds in %.0f s: %d requests sent, %d acknowledged, "
          "%d refused (503), %d unanswered (engine killed); lost %d, duplicated %d, incomplete %d, "
          "503-but-stored %d; SIGTERM exit codes %s, final stop %s"
          % (seed, rounds, term_rounds, time.time() - t_start, cl.sent, acked, refused, cl.unknown,
             lost, duplicated, incomplete, lies, sorted(set(term_codes)), code))
    bad = lost or duplicated or incomplete or lies or any(c != 0 for c in term_codes) or code != 0
    print("%d passed, %d failed" % (0 if bad else 1, 1 if bad else 0))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
