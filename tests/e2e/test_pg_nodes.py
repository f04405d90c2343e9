"""Several nodes on one PostgreSQL: three engines, one database, one set of
cycle files, black-box over real HTTP (SPEC "Several nodes: PostgreSQL").

Each test starts a throwaway PostgreSQL database (tests/e2e/pgserver.py
through lib.pg_database(); skipped with the reason when no server can run
here) and three nodes n1, n2, n3 with --lease 2.
"""

import json as _json
import os
import threading
import time
import urllib.parse

from lib import (test, Engine, Recorder, eq, ok, contains, wait_until, cycle, lua_str,
                 accepted, http_request, pg_database)

LEASE = 2


def nodes(files, n=3, env=None, lease=LEASE):
    """n engines on one fresh database and one cycles directory (node names
    n1..nN).  The first starts alone (it creates the schema), the others
    after it."""
    url = pg_database()
    first = Engine(files, store=url, env=env, args=["--node", "n1", "--lease", str(lease)])
    out = [first]
    for i in range(2, n + 1):
        out.append(Engine(cycles_dir=first.cycles_dir, store=url, env=env,
                          args=["--node", "n%d" % i, "--lease", str(lease)]))
    first.start()
    for e in out[1:]:
        e.start()
    return out


def close(engines):
    for e in engines:
        e.close()


def post_json(e, cyc, hook, body, timeout=10):
    return e.post(e.hook_path(cyc, hook), json=body, timeout=timeout)


WORK = """
    hw.webhook { name = "in", fields = { n = "integer" } },
    hw.step { name = "work", run = function(tx)
      hw.http.post(%(u)s .. "/work", { json = { n = tx.data.n, tx = tx.id } })
    end },
    hw.step { name = "done", run = function(tx)
      hw.http.post(%(u)s .. "/done", { json = { n = tx.data.n, tx = tx.id } })
    end },
"""


@test
def requests_spread_over_three_nodes_are_stored_once():
    with Recorder() as rec:
        es = nodes({"load.lua": cycle("load", WORK % {"u": lua_str(rec.url)})})
        try:
            # the same webhook URL on every node
            urls = set(urllib.parse.urlsplit(e.hook_url("load", "in")).path for e in es)
            eq(len(urls), 1, "one webhook path on all nodes: %r" % urls)
            ids = []
            for i in range(30):
                e = es[i % 3]
                ids.append(accepted(post_json(e, "load", "in", {"n": i})))
            eq(len(set(ids)), 30, "30 distinct transaction ids")
            for tid in ids:
                es[(int(tid) + 1) % 3].wait_tx(tid, "completed", timeout=20)
            done = rec.wait_for("POST", "/done", 30, timeout=20)
            by_n = {}
            for r in done:
                by_n[r["json"]["n"]] = by_n.get(r["json"]["n"], 0) + 1
            eq(sorted(by_n), list(range(30)), "every request ran")
            eq(set(by_n.values()), {1}, "each ran once")
            eq(len(rec.find("POST", "/work")), 30, "no step ran twice")
            # the admin API of any node lists every transaction
            for e in es:
                listed = set(t["id"] for t in e.txs(cycle="load", limit=100))
                eq(listed, set(ids), "node %s lists every transaction" % e.args[1])
        finally:
            close(es)


ORDERS = """
    hw.webhook { name = "new order", fields = { order_id = "string" } },
    hw.webhook { name = "status", match = "order_id", fields = { status = "string" } },
    hw.step { name = "tell", run = function(tx)
      hw.http.post(%(u)s .. "/tell", { json = { tx = tx.id, run = tx.run, status = tx.data.status } })
    end },
"""


@test
def parked_through_node_1_resumed_through_node_3():
    with Recorder() as rec:
        es = nodes({"orders.lua": cycle("orders", ORDERS % {"u": lua_str(rec.url)})})
        try:
            tid = accepted(post_json(es[0], "orders", "new order", {"order_id": "A1"}))
            es[0].wait_tx(tid, "waiting")
            r = post_json(es[2], "orders", "status", {"order_id": "A1", "status": "Despatched"})
            eq(r.status, 202, r)
            eq(r.json["transaction"], tid)
            got = rec.wait_for("POST", "/tell", 1)
            eq(got[0]["json"], {"tx": tid, "run": 2, "status": "Despatched"})
            # a value nobody waits with is a 404 on every node
            for e in es:
                eq(post_json(e, "orders", "status", {"order_id": "B9", "status": "x"}).status, 404)
            t = es[1].wait_tx(tid, "waiting")
            ok(any(h["step"] == "tell" and h["run"] == 2 for h in t["history"]), t["history"])
        finally:
            close(es)


SERIAL = """
    hw.webhook { name = "new", fields = { id = "string" } },
    hw.webhook { name = "ev", match = "id", fields = { k = "integer" } },
    hw.step { name = "slow", run = function(tx)
      hw.http.post(%(u)s .. "/enter", { json = { tx = tx.id, run = tx.run, k = tx.data.k } })
      hw.http.post(%(u)s .. "/leave", { json = { tx = tx.id, run = tx.run, k = tx.data.k } })
    end },
"""


@test
def runs_of_one_transaction_never_overlap_across_nodes():
    with Recorder() as rec:
        rec.route("POST", "/enter", json={}, delay=0.25)
        es = nodes({"ser.lua": cycle("ser", SERIAL % {"u": lua_str(rec.url)})})
        try:
            ids = ["X%d" % i for i in range(4)]
            tids = {}
            for x in ids:
                tids[x] = accepted(post_json(es[0], "ser", "new", {"id": x}))
            for x in ids:
                es[0].wait_tx(tids[x], "waiting")
            answers = []
            go = threading.Event()

            def fire(e, x, k):
                go.wait()
                answers.append(post_json(e, "ser", "ev", {"id": x, "k": k}))
            # five resumes of each transaction at once, through nodes 1 and 3
            threads = [threading.Thread(target=fire, args=(es[k % 2 * 2], x, k))
                       for x in ids for k in range(5)]
            for t in threads:
                t.start()
            go.set()
            for t in threads:
                t.join()
            eq(sorted(a.status for a in answers), [202] * 20, answers)
            rec.wait_for("POST", "/leave", 20, timeout=30)
            for x in ids:
                tid = tids[x]
                enters = [r for r in rec.find("POST", "/enter") if r["json"]["tx"] == tid]
                leaves = [r for r in rec.find("POST", "/leave") if r["json"]["tx"] == tid]
                events = sorted([(r["time"], "enter", r["json"]["run"]) for r in enters] +
                                [(r["time"], "leave", r["json"]["run"]) for r in leaves])
                # enter, leave of the same run, then the next run: never two inside
                for i in range(0, len(events), 2):
                    eq((events[i][1], events[i + 1][1]), ("enter", "leave"), "overlap in %r" % events)
                    eq(events[i][2], events[i + 1][2], "overlap in %r" % events)
                eq(sorted(r["json"]["run"] for r in leaves), [2, 3, 4, 5, 6], "distinct run numbers")
                eq(sorted(r["json"]["k"] for r in leaves), list(range(5)), "every resume ran once")
        finally:
            close(es)


@test
def kill_9_of_a_node_under_load_loses_nothing():
    with Recorder() as rec:
        rec.route("POST", "/work", json={}, delay=0.3)
        es = nodes({"load.lua": cycle("load", WORK % {"u": lua_str(rec.url)})})
        try:
            path = es[0].hook_path("load", "in")
            acked = {}  # n -> (tid, node index)
            lock = threading.Lock()
            killed = threading.Event()

            def client(idx, ns):
                for n in ns:
                    e = es[idx]
                    if idx == 1 and killed.is_set():
                        return
                    try:
                        r = e.post(path, json={"n": n}, timeout=10)
                    except OSError:
                        continue  # the killed node: not acknowledged
                    if r.status == 202:
                        with lock:
                            acked[n] = (r.json["transaction"], idx)
            threads = [threading.Thread(target=client, args=(i, range(i, 90, 3))) for i in range(3)]
            for t in threads:
                t.start()
            # kill node 2 once it holds runs in flight
            wait_until(lambda: sum(1 for v in acked.values() if v[1] == 1) >= 8, timeout=20)
            t_kill = time.time()
            killed.set()
            es[1].kill()
            for t in threads:
                t.join()
            on_killed = [n for n, v in acked.items() if v[1] == 1]
            ok(on_killed, "node 2 acknowledged requests before it was killed")
            # every acknowledged request completes on the survivors, within the lease
            deadline = LEASE + 20
            for n, (tid, _) in sorted(acked.items()):
                es[0].wait_tx(tid, "completed", timeout=max(1, t_kill + deadline - time.time()))
            done = rec.wait_for("POST", "/done", len(acked), timeout=10)
            last = max(r["time"] for r in done if r["json"]["n"] in on_killed)
            took = last - t_kill
            work = {}
            for r in rec.find("POST", "/work"):
                work[r["json"]["n"]] = work.get(r["json"]["n"], 0) + 1
            fin = {}
            for r in done:
                fin[r["json"]["n"]] = fin.get(r["json"]["n"], 0) + 1
            for n in acked:
                ok(fin.get(n, 0) >= 1, "request %d completed" % n)
                # at-least-once per step: a step running at the kill runs again once
                ok(work.get(n, 0) <= 2 and fin.get(n, 0) <= 2, "request %d ran a step more than twice" % n,
                   work.get(n), fin.get(n))
            for n, (_, idx) in acked.items():
                if idx != 1:
                    eq((work.get(n), fin.get(n)), (1, 1), "request %d on a live node ran once" % n)
            ok(took < LEASE + 10, "takeover within the lease (+ scan and runs): %.2f s" % took)
            log = es[0].log() + es[2].log()
            contains(log, "taking over", "a survivor logged the takeover")
            print("      kill -9 -> last run of node 2 taken over and finished: %.2f s "
                  "(lease %d s, %d of its requests, %d acknowledged in all)"
                  % (took, LEASE, len(on_killed), len(acked)))
            # the killed node comes back under its name: its work is gone, it exits
            # nothing and serves again
            es[1].start()
            eq(post_json(es[1], "load", "in", {"n": 1000}).status, 202)
        finally:
            close(es)


@test
def a_node_whose_lease_was_taken_over_exits():
    es = nodes({"load.lua": cycle("load", """
    hw.webhook { name = "in" },
""")}, n=2)
    try:
        os_pid = es[1].proc.pid
        import signal
        os.kill(os_pid, signal.SIGSTOP)  # looks dead: no lease renewal
        try:
            wait_until(lambda: "taking over" in es[0].log(), timeout=LEASE + 10)
        finally:
            os.kill(os_pid, signal.SIGCONT)
        wait_until(lambda: es[1].proc.poll() is not None, timeout=10, msg="node 2 exits")
        eq(es[1].proc.returncode, 1)
        contains(es[1].log(), "its lease was taken over by another node")
    finally:
        close(es)


CONN = """local hw = require "hookwork"
return hw.connector { name = "shop", allowed_ips = { "10.9.9.9" } }
"""

GUARDED = """
    hw.webhook { name = "in", ip_filtered = true },
"""


@test
def connector_put_on_node_2_takes_effect_on_node_1_within_1_s():
    es = nodes({"shop.lua": CONN, "g.lua": cycle("g", GUARDED, '\n  connector = "shop",')})
    try:
        eq(post_json(es[0], "g", "in", {}).status, 403)
        r = es[1].admin("PUT", "/api/connectors/shop", json={"allowed_ips": ["127.0.0.1"]})
        eq(r.status, 200, r)
        t0 = time.time()
        wait_until(lambda: post_json(es[0], "g", "in", {}).status == 202, timeout=5, interval=0.02)
        took = time.time() - t0
        ok(took <= 1.0, "node 1 took the PUT within 1 s: %.2f s" % took)
        wait_until(lambda: es[2].admin("GET", "/api/connectors/shop").json["allowed_ips"] == ["127.0.0.1"],
                   timeout=1.0, interval=0.02, msg="node 3 shows the PUT's list within 1 s")
        print("      connector PUT on n2 seen by n1 after %.2f s" % took)
    finally:
        close(es)


@test
def cycle_stop_and_start_on_one_node_reach_every_node():
    es = nodes({"c.lua": cycle("c", """
    hw.webhook { name = "in" },
""")})
    try:
        for e in es:
            eq(post_json(e, "c", "in", {}).status, 202)
        es[0].stop_cycle("c")
        t0 = time.time()
        for e in es[1:]:
            wait_until(lambda: post_json(e, "c", "in", {}).status == 503, timeout=5, interval=0.02)
        took = time.time() - t0
        ok(took <= 1.0, "stop seen everywhere within 1 s: %.2f s" % took)
        eq(es[1].cycle("c")["state"], "stopped")
        es[2].start_cycle("c")
        t0 = time.time()
        wait_until(lambda: post_json(es[0], "c", "in", {}).status == 202, timeout=5, interval=0.02)
        ok(time.time() - t0 <= 1.0, "start seen within 1 s")
    finally:
        close(es)


LONG = """
    hw.webhook { name = "in" },
    hw.step { name = "loop", run = function(tx)
      for i = 1, 100 do hw.http.get(%(u)s .. "/tick?tx=" .. tx.id) end
    end },
"""


@test
def cancel_through_another_node_stops_the_run():
    with Recorder() as rec:
        rec.route("GET", "/tick", json={}, delay=0.05)
        es = nodes({"long.lua": cycle("long", LONG % {"u": lua_str(rec.url)})})
        try:
            tid = accepted(post_json(es[0], "long", "in", {}))
            rec.wait_for("GET", "/tick", 3)
            r = es[1].admin("POST", "/api/transactions/%s/cancel" % tid)
            eq(r.status, 200, r)
            t = es[2].wait_tx(tid, "cancelled")
            eq(t["state"], "cancelled")
            time.sleep(1.0)  # the run on node 1 hears of it within a second
            n = len(rec.find("GET", "/tick"))
            time.sleep(1.0)
            eq(len(rec.find("GET", "/tick")), n, "no call after the cancel was seen")
            ok(n < 60, "the run stopped early (%d calls)" % n)
            t = es[0].tx(tid)
            eq(t["state"], "cancelled")
            ok(any(h["status"] == "stopped" and h.get("error") == "cancelled" for h in t["history"]),
               t["history"])
        finally:
            close(es)


DEDUPE = """
    hw.webhook { name = "in", dedupe = { header = "x-id" } },
    hw.step { name = "work", run = function(tx)
      hw.http.post(%(u)s .. "/work", { json = { id = tx.request.headers["x-id"] } })
    end },
"""


@test
def one_dedupe_key_on_two_nodes_at_once_runs_once():
    with Recorder() as rec:
        es = nodes({"d.lua": cycle("d", DEDUPE % {"u": lua_str(rec.url)})}, n=2)
        try:
            path = es[0].hook_path("d", "in")
            got = []

            def send(e, key):
                r = e.post(path, json={}, headers={"x-id": key})
                got.append((key, r.status, r.json))
            for k in range(10):
                key = "k%d" % k
                ts = [threading.Thread(target=send, args=(e, key)) for e in es for _ in range(2)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
            eq(sorted(set(s for _, s, _ in got)), [202], got)
            for k in range(10):
                key = "k%d" % k
                txs = set(j["transaction"] for kk, _, j in got if kk == key)
                eq(len(txs), 1, "one transaction for %s: %r" % (key, got))
                eq(sum(1 for kk, _, j in got if kk == key and not j.get("duplicate")), 1,
                   "one first delivery of %s" % key)
            time.sleep(1.0)
            rec.wait_for("POST", "/work", 10)
            by = {}
            for r in rec.find("POST", "/work"):
                by[r["json"]["id"]] = by.get(r["json"]["id"], 0) + 1
            eq(by, {"k%d" % k: 1 for k in range(10)})
        finally:
            close(es)


@test
def metrics_carry_the_node_label():
    es = nodes({"m.lua": cycle("m", """
    hw.webhook { name = "in" },
""")}, n=2)
    try:
        eq(post_json(es[1], "m", "in", {}).status, 202)
        text = es[1].metrics(raw=True)
        lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        ok(lines, text)
        for ln in lines:
            contains(ln, 'node="n2"', "every series of n2 has its node label")
        ok(any(ln.startswith('hookwork_webhook_requests_total{cycle="m",step="in",status="202",node="n2"} 1')
               for ln in lines), text)
        ok(all('node="n1"' in ln for ln in es[0].metrics(raw=True).splitlines() if ln and ln[0] != "#"))
        # (lib's metrics() leaves the label out for the single-node tests)
        contains(es[1].metrics(), 'hookwork_webhook_requests_total{cycle="m",step="in",status="202"} 1')
    finally:
        close(es)


RESUMES = """
    hw.webhook { name = "new order", fields = { order_id = "string" } },
    hw.webhook { name = "status", match = "order_id", fields = { status = "string" } },
    hw.step { name = "tell", run = function(tx)
      hw.http.post(%(u)s .. "/tell", { json = { tx = tx.id, run = tx.run } })
    end },
"""


@test
def kill_9_during_resumed_runs_hands_them_to_a_survivor():
    with Recorder() as rec:
        rec.route("POST", "/tell", json={}, delay=1.5)
        es = nodes({"orders.lua": cycle("orders", RESUMES % {"u": lua_str(rec.url)})})
        try:
            tids = []
            for i in range(5):
                tids.append(accepted(post_json(es[0], "orders", "new order", {"order_id": "O%d" % i})))
            for tid in tids:
                es[0].wait_tx(tid, "waiting")
            for i in range(5):  # resumes accepted by node 2: jobs it owns
                eq(post_json(es[1], "orders", "status", {"order_id": "O%d" % i, "status": "s"}).status, 202)
            rec.wait_for("POST", "/tell", 5)
            t_kill = time.time()
            es[1].kill()  # while every resumed run waits for its call
            for tid in tids:
                wait_until(lambda: any(h["step"] == "tell" and h["run"] == 2 and h.get("ended")
                                       and h["status"] == "ok" for h in es[2].tx(tid)["history"]),
                           timeout=LEASE + 20, msg="run 2 of %s ended on a survivor" % tid)
            took = time.time() - t_kill
            tells = rec.find("POST", "/tell")
            for tid in tids:
                n = sum(1 for r in tells if r["json"] == {"tx": tid, "run": 2})
                ok(1 <= n <= 2, "run 2 of %s called /tell %d times (at-least-once per step)" % (tid, n))
            contains(es[0].log() + es[2].log(), "taking over")
            print("      kill -9 -> 5 resumed runs of node 2 ended elsewhere: %.2f s" % took)
        finally:
            close(es)


RETRYING = """
    hw.webhook { name = "in" },
    hw.step { name = "call", retry = { attempts = 3, delays = { 4 } }, run = function(tx)
      local r = hw.http.post(%(u)s .. "/flaky", { json = { tx = tx.id } })
      if r.status ~= 200 then error("status " .. r.status) end
    end },
"""


@test
def a_retry_wait_is_taken_over_with_its_timer():
    with Recorder() as rec:
        rec.route("POST", "/flaky", sequence=[{"status": 500, "json": {}}, {"status": 200, "json": {}}])
        es = nodes({"r.lua": cycle("r", RETRYING % {"u": lua_str(rec.url)})}, n=2)
        try:
            tid = accepted(post_json(es[1], "r", "in", {}))
            rec.wait_for("POST", "/flaky", 1)
            t_fail = time.time()
            wait_until(lambda: es[0].tx(tid).get("retry_at"), timeout=5, msg="the retry wait is stored")
            es[1].kill()  # node 2 held the wait
            t = es[0].wait_tx(tid, "completed", timeout=LEASE + 20)
            calls = rec.find("POST", "/flaky")
            eq(len(calls), 2, "tried again once, by the survivor")
            ok(calls[1]["time"] - t_fail >= 3.5, "the delay was kept (%.2f s)" % (calls[1]["time"] - t_fail))
            eq([h["status"] for h in t["history"] if h["step"] == "call"], ["failed", "ok"], t["history"])
        finally:
            close(es)


EARLY = """
    hw.webhook { name = "order", fields = { order_id = "string" } },
    hw.webhook { name = "tracking", match = { request = "reference", transaction = "order_id" },
                 early = 1, expires = 1 },
"""


@test
def expiry_and_early_windows_act_once_across_nodes():
    es = nodes({"carrier.lua": cycle("carrier", EARLY)})
    try:
        # one node sweeps: the live one with the smallest name
        wait_until(lambda: "node 'n1' runs the sweeps" in es[0].log(), timeout=5)
        for e in es[1:]:
            ok("runs the sweeps" not in e.log(), "only n1 sweeps", e.log())
        r = post_json(es[1], "carrier", "tracking", {"reference": "none"})
        eq(r.status, 202, r)
        eq(r.json.get("buffered"), True, r.json)
        tid = accepted(post_json(es[2], "carrier", "order", {"order_id": "E1"}))
        es[0].wait_tx(tid, "expired", timeout=10)

        def dropped():
            total = 0.0
            for e in es:
                if not e.running():
                    continue
                for ln in e.metrics().splitlines():
                    if ln.startswith('hookwork_buffered_expired_total{cycle="carrier",step="tracking"'):
                        total += float(ln.rsplit(" ", 1)[1])
            return total
        wait_until(lambda: dropped() >= 1, timeout=10, msg="the kept request dropped")
        time.sleep(1.5)
        eq(dropped(), 1.0, "one node dropped it, once")
        eq([ln for ln in es[1].metrics().splitlines() + es[2].metrics().splitlines()
            if ln.startswith("hookwork_buffered_expired_total{")], [], "n2 and n3 dropped nothing")
        # the sweeper dies: the next one takes the role and expiry goes on
        es[0].kill()
        wait_until(lambda: "node 'n2' runs the sweeps" in es[1].log(), timeout=LEASE + 5)
        ok("runs the sweeps" not in es[2].log(), "n3 does not sweep while n2 lives")
        tid = accepted(post_json(es[2], "carrier", "order", {"order_id": "E2"}))
        es[2].wait_tx(tid, "expired", timeout=10)
    finally:
        close(es)
