"""Operations on stored work, black-box over real HTTP: the stored request,
retry / replay / cancel (one and bulk), search and paging, rejections and
their log lines, the step error policy (retry with durable waits, on_error),
on_failure, retention, and the harness (t.retry, t.cancel, t.advance)."""

import base64
import json as _json
import os
import signal
import time
import urllib.parse

from lib import (test, Engine, Recorder, eq, ok, contains, fail, wait_until,
                 run_cli, cycle, HERE, not_on_postgres)


def post_json(e, url, obj, headers=None):
    return e.post(url, json=obj, headers=headers)


def admin_post(e, path, obj=None):
    return e.admin("POST", path, json=obj)


LINKER = cycle("a", """
    hw.webhook { name = "in", fields = { order = "string" } },
    hw.link { name = "to b", cycle = "b", hook = "in" },
""")
TARGET = cycle("b", """
    hw.webhook { name = "in", fields = { order = "string" } },
    hw.step { name = "mark", run = function(tx) tx.data.seen = true end },
""", "\n  autostart = false,")

ORDERS = cycle("orders", """
    hw.webhook { name = "new", fields = { order_id = "string", customer = "object?" } },
    hw.webhook { name = "status", match = "order_id" },
    hw.step { name = "note", run = function(tx) tx.data.noted = (tx.data.noted or 0) + 1 end },
""")


@test
def stored_request_is_shown_byte_exact_and_redacted():
    with Engine({"orders.lua": ORDERS}) as e:
        e.start()
        url = e.hook_url("orders", "new")
        # a form body with bytes that are not UTF-8 in a field that is not
        # declared (so not copied into data): only the stored body has them
        body = b"order_id=SO-1&note=%ff&raw=\xff\xfeZ"
        r = e.post(url + "?src=shop&x=1", body=body,
                   headers={"Content-Type": "application/x-www-form-urlencoded",
                            "Authorization": "Bearer s3cret",
                            "Cookie": "sid=1", "X-Api-Key": "k", "X-Trace": "t-1"})
        eq(r.status, 202, r.text)
        tid = r.json["transaction"]
        e.wait_tx(tid, "waiting")
        r2 = e.post(e.hook_url("orders", "status"), json={"order_id": "SO-1", "status": "Paid"},
                    headers={"X-Api-Key": "again"})
        eq(r2.status, 202, r2.text)
        wait_until(lambda: len(e.tx(tid)["history"]) >= 4, msg="the resume ran")
        tx = e.tx(tid)
        req = tx["request"]
        eq(req["method"], "POST")
        eq(req["path"], urllib.parse.urlsplit(url).path)
        eq(req["query"], {"src": "shop", "x": "1"})
        eq(req["body_encoding"], "base64", "a body that is not UTF-8 is base64")
        eq(base64.b64decode(req["body"]), body, "byte for byte")
        eq(req["ip"], "127.0.0.1")
        ok(req["received"].endswith("Z"), "received is ISO 8601", req["received"])
        h = req["headers"]
        for name in ("authorization", "cookie", "x-api-key"):
            eq(h.get(name), "[redacted]", name)
        eq(h.get("x-trace"), "t-1")
        ok("s3cret" not in _json.dumps(tx), "the secret is not shown")
        reqs = tx["requests"]
        eq(len(reqs), 1, "one per resume")
        eq(reqs[0]["body_encoding"], "utf-8")
        eq(_json.loads(reqs[0]["body"]), {"order_id": "SO-1", "status": "Paid"})
        eq(reqs[0]["headers"].get("x-api-key"), "[redacted]")


@test
def retry_after_fixing_the_cause_completes():
    with Engine({"a.lua": LINKER, "b.lua": TARGET}) as e:
        e.start()
        r = e.post(e.hook_url("a", "in"), json={"order": "SO-9"})
        tid = r.json["transaction"]
        tx = e.wait_tx(tid, "failed")
        eq(tx["step"], "to b")
        # not fixed yet: retry fails again, and the answer still names the run
        r = admin_post(e, "/api/transactions/%s/retry" % tid)
        eq(r.status, 202, r.text)
        eq(r.json, {"transaction": tid, "run": 2})
        e.wait_tx(tid, "failed")
        e.start_cycle("b")
        r = admin_post(e, "/api/transactions/%s/retry" % tid)
        eq(r.status, 202, r.text)
        eq(r.json["run"], 3)
        tx = e.wait_tx(tid, "completed")
        eq(tx["runs"], 3)
        ok(any(h["run"] == 3 and h["step"] == "to b" and h["status"] == "ok" for h in tx["history"]),
           "run 3 linked", tx["history"])
        bs = e.txs(cycle="b")
        eq(len(bs), 1)
        eq(e.wait_tx(bs[0]["id"], "completed")["data"]["seen"], True)
        # not failed any more: 409 naming the state
        r = admin_post(e, "/api/transactions/%s/retry" % tid)
        eq(r.status, 409)
        contains(r.json["error"], "completed")
        eq(admin_post(e, "/api/transactions/99999/retry").status, 404)
        eq(e.admin("GET", "/api/transactions/%s/retry" % tid).status, 405)


@test
def retry_from_an_earlier_step_and_bad_from():
    steps = """
    hw.webhook { name = "in" },
    hw.step { name = "one", run = function(tx) tx.data.ones = (tx.data.ones or 0) + 1 end },
    hw.step { name = "two", run = function(tx)
      if not tx.data.ok then error("not ok yet") end
    end },
"""
    with Engine({"c.lua": cycle("c", steps)}) as e:
        e.start()
        tid = e.post(e.hook_url("c", "in"), json={}).json["transaction"]
        eq(e.wait_tx(tid, "failed")["step"], "two")
        r = admin_post(e, "/api/transactions/%s/retry" % tid, {"from": "nope"})
        eq(r.status, 400)
        contains(r.json["error"], "nope")
        eq(e.tx(tid)["state"], "failed", "a refused retry changes nothing")
        r = admin_post(e, "/api/transactions/%s/retry" % tid, {"from": "one"})
        eq(r.status, 202, r.text)
        tx = e.wait_tx(tid, "failed")
        wait_until(lambda: e.tx(tid)["runs"] == 2)
        eq(e.tx(tid)["data"]["ones"], 2, "step one ran again")
        eq(admin_post(e, "/api/transactions/%s/retry" % tid, {"from": 5}).status, 400)


@test
def retry_is_durable_across_kill_9():
    with Engine({"a.lua": LINKER, "b.lua": TARGET}) as e:
        e.start()
        tid = e.post(e.hook_url("a", "in"), json={"order": "SO-7"}).json["transaction"]
        e.wait_tx(tid, "failed")
        e.start_cycle("b")
        e.stop_cycle("b")  # retry runs, but the answer comes first: kill right after
        r = admin_post(e, "/api/transactions/%s/retry" % tid)
        eq(r.status, 202)
        e.kill()
        e.start()
        tx = e.wait_tx(tid, ["failed", "completed"])
        eq(tx["runs"], 2, "the retry was stored: run 2 exists after kill -9")


@test
def replay_makes_a_new_transaction_with_the_same_data():
    with Engine({"orders.lua": ORDERS}) as e:
        e.start()
        r = e.post(e.hook_url("orders", "new"), json={"order_id": "SO-5", "customer": {"email": "a@b.c"}})
        tid = r.json["transaction"]
        old = e.wait_tx(tid, "waiting")
        r = admin_post(e, "/api/transactions/%s/replay" % tid)
        eq(r.status, 202, r.text)
        new = r.json["transaction"]
        ok(new != tid, "a new transaction")
        eq(r.json["replay_of"], tid)
        tx = e.wait_tx(new, "waiting")
        eq(tx["data"], old["data"])
        eq(tx["replay_of"], tid)
        eq(base64.b64decode(tx["request"]["body"]) if tx["request"]["body_encoding"] == "base64"
           else tx["request"]["body"].encode(), old["request"]["body"].encode())
        eq(admin_post(e, "/api/transactions/424242/replay").status, 404)
        e.stop_cycle("orders")
        r = admin_post(e, "/api/transactions/%s/replay" % tid)
        eq(r.status, 409)
        contains(r.json["error"], "stopped")


@test
def cancel_a_waiting_transaction_then_its_match_gets_404():
    with Engine({"orders.lua": ORDERS}) as e:
        e.start()
        tid = e.post(e.hook_url("orders", "new"), json={"order_id": "SO-3"}).json["transaction"]
        e.wait_tx(tid, "waiting")
        r = admin_post(e, "/api/transactions/%s/cancel" % tid)
        eq(r.status, 200, r.text)
        eq(r.json["state"], "cancelled")
        e.kill()  # the answer came after the commit: kill -9 loses nothing
        e.start()
        eq(e.tx(tid)["state"], "cancelled")
        r = e.post(e.hook_url("orders", "status"), json={"order_id": "SO-3"})
        eq(r.status, 404, r.text)
        r = admin_post(e, "/api/transactions/%s/cancel" % tid)
        eq(r.status, 409)
        contains(r.json["error"], "cancelled")
        eq(e.txs(state="cancelled")[0]["id"], tid)


@test
def cancel_a_running_transaction_stops_it():
    with Recorder() as rec, Engine() as e:
        rec.route("GET", "/slow", delay=1.5, json={"ok": True})
        e.write("s.lua", cycle("s", """
    hw.webhook { name = "in" },
    hw.request { name = "slow", method = "GET", url = "%s/slow" },
    hw.request { name = "after", method = "GET", url = "%s/after" },
""" % (rec.url, rec.url)))
        e.start()
        tid = e.post(e.hook_url("s", "in"), json={}).json["transaction"]
        rec.wait_for("GET", "/slow")
        r = admin_post(e, "/api/transactions/%s/cancel" % tid)
        eq(r.status, 200, r.text)
        time.sleep(2.5)
        tx = e.tx(tid)
        eq(tx["state"], "cancelled")
        eq(rec.find("GET", "/after"), [], "the run stopped at its next yield")
        # inside one step: the call that returns after the cancel is its last
        rec.route("GET", "/slow2", delay=1.5, json={"ok": True})
        e.write("t.lua", cycle("t", """
    hw.webhook { name = "in" },
    hw.step { name = "two calls", run = function(tx)
      hw.http.get("%s/slow2")
      hw.http.get("%s/after2")
    end },
""" % (rec.url, rec.url)))
        tid = e.post(e.hook_url("t", "in"), json={}).json["transaction"]
        rec.wait_for("GET", "/slow2")
        eq(admin_post(e, "/api/transactions/%s/cancel" % tid).status, 200)
        e.wait_tx(tid, "cancelled")
        time.sleep(2.5)
        eq(e.tx(tid)["state"], "cancelled")
        eq(rec.find("GET", "/after2"), [], "stopped inside the step, at the yield")


@test
def bulk_retry_by_filter():
    with Engine({"a.lua": LINKER, "b.lua": TARGET}) as e:
        e.start()
        ids = [e.post(e.hook_url("a", "in"), json={"order": "O%d" % i}).json["transaction"] for i in range(5)]
        for i in ids:
            e.wait_tx(i, "failed")
        e.start_cycle("b")
        r = e.admin("POST", "/api/transactions/retry?cycle=a&step=" + urllib.parse.quote("to b"))
        eq(r.status, 200, r.text)
        eq(r.json, {"retried": 5})
        for i in ids:
            e.wait_tx(i, "completed")
        eq(e.admin("POST", "/api/transactions/retry?cycle=a").json, {"retried": 0})
        eq(e.admin("POST", "/api/transactions/retry?since=yesterday").status, 400)


@test
def search_and_paging_over_thousands():
    n = 3000
    with Engine({"orders.lua": ORDERS}) as e:
        e.start()
        url = e.hook_url("orders", "new")
        ids = []
        for i in range(n):
            body = {"order_id": "SO-%d" % i}
            if i % 100 == 7:
                body["customer"] = {"email": "vip@example.com", "tier": 3}
            r = e.post(url, json=body)
            eq(r.status, 202, r.text)
            ids.append(r.json["transaction"])
        # the boundary sits half a second from both groups: the engine's
        # stored times come from its own clock reading, which may differ
        # from this process's by some milliseconds
        time.sleep(0.55)
        mid = time.time()
        time.sleep(0.55)
        for i in range(n, n + 20):
            ids.append(e.post(url, json={"order_id": "SO-%d" % i}).json["transaction"])
        wait_until(lambda: len(e.txs(state="waiting", limit=10000)) == n + 20, timeout=30)
        found = e.txs(match="SO-1050")
        eq([t["id"] for t in found], [ids[1050]])
        eq(found[0]["match"], "SO-1050")
        vip = e.txs(q="customer.email=vip@example.com", limit=1000)
        eq(sorted(int(t["id"]) for t in vip), sorted(int(ids[i]) for i in range(n) if i % 100 == 7))
        eq(len(e.txs(q="customer.tier=3", limit=1000)), len(vip), "numbers match by value")
        eq(e.txs(q="customer.tier=4"), [])
        eq(e.admin("GET", "/api/transactions?q=nopath").status, 400)
        eq(e.admin("GET", "/api/transactions?state=bogus").status, 400)
        eq(e.admin("GET", "/api/transactions?cursor=x&page=1").status, 400)
        # paging: every transaction once, newest first
        seen, cursor, pages = [], None, 0
        while True:
            q = {"page": "1", "limit": "700", "cycle": "orders"}
            if cursor:
                q["cursor"] = cursor
            r = e.admin("GET", "/api/transactions?" + urllib.parse.urlencode(q))
            eq(r.status, 200, r.text)
            seen += [t["id"] for t in r.json["transactions"]]
            cursor = r.json["next"]
            pages += 1
            if cursor is None:
                break
            ok(pages < 20, "paging ends")
        eq(len(seen), n + 20)
        eq(seen, sorted(seen, key=int, reverse=True))
        eq(set(seen), set(ids))
        late = e.txs(since="%.3f" % mid, limit=1000)
        eq(sorted(t["id"] for t in late), sorted(ids[n:]))
        early = e.txs(until="%.3f" % mid, step="status", limit=10000)
        eq(len(early), n)
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid + 1)) + "Z"
        ok(len(e.txs(since=iso, limit=1000)) <= 20)
        eq(e.txs(step="nope"), [])
        eq(type(e.txs()), list, "without page=1 the answer is the array as before")


@test
def rejections_are_listed_and_logged_with_a_rate_limit():
    steps = """
    hw.webhook { name = "in", fields = { amount = "number" } },
"""
    with Engine({"r.lua": cycle("r", steps)}) as e:
        e.start()
        url = e.hook_url("r", "in")
        eq(e.post(url, json={"amount": "x"}).status, 400)
        eq(e.post("/hooks/AAAAAAAAAAAAAAAAAAAAAAAA", json={}).status, 404)
        eq(e.post(url, json={}, method="GET").status, 405)
        r = e.admin("GET", "/api/rejections?limit=2")
        eq(r.status, 200, r.text)
        eq([x["status"] for x in r.json], [405, 404], "newest first")
        all_ = e.admin("GET", "/api/rejections").json
        eq(all_[2]["status"], 400)
        eq(all_[2]["cycle"], "r")
        eq(all_[2]["step"], "in")
        contains(all_[2]["reason"], "amount")
        eq(all_[2]["ip"], "127.0.0.1")
        ok(all_[2]["time"].endswith("Z"))
        eq(e.admin("GET", "/api/rejections?limit=0").status, 400)
        contains(e.log(), "field 'amount'")
        for _ in range(400):
            e.post(url, json={"amount": "x"})
        e.post(url, json={"amount": "y"})
        time.sleep(1.2)
        e.post(url, json={"amount": "z"})
        wait_until(lambda: "lines dropped" in e.log(), msg="the dropped count is logged")
        lines = [ln for ln in e.log().splitlines() if "[reject]" in ln]
        ok(len(lines) < 404, "rate limited: %d lines" % len(lines))
        eq(len(e.admin("GET", "/api/rejections?limit=10000").json), 405, "every rejection is kept")


FLAKY = """local hw = require "hookwork"
return hw.cycle {
  name = "f",
  steps = {
    hw.webhook { name = "in" },
    hw.request { name = "push", method = "POST", url = "%s/push", fail_on_status = true,
                 retry = { attempts = 3, delays = { %s } } },
  },
}
"""


def durable_wait(stop):
    with Recorder() as rec, Engine() as e:
        rec.route("POST", "/push", sequence=[{"status": 500}, {"status": 200, "json": {"ok": 1}}])
        e.write("f.lua", FLAKY % (rec.url, "4"))
        e.start()
        tid = e.post(e.hook_url("f", "in"), json={}).json["transaction"]
        tx = wait_until(lambda: e.tx(tid).get("retry_at") and e.tx(tid), msg="a retry wait")
        eq(tx["state"], "running")
        retry_at = tx["retry_at"]
        ok(any(h["status"] == "failed" and "attempt 1 of 3" in (h["note"] or "") for h in tx["history"]),
           "the attempt is in the history", tx["history"])
        time.sleep(0.3)
        stop(e)
        e.start()
        eq(e.tx(tid)["retry_at"], retry_at, "the countdown goes on, not from the start")
        eq(e.tx(tid)["state"], "running")
        got = rec.wait_for("POST", "/push", count=2, timeout=15)
        due = time.mktime(time.strptime(retry_at[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        ok(got[1].time >= due, "not before its time")
        ok(got[1].time < due + 4, "not restarted from zero: %.2f vs %.2f" % (got[1].time, due))
        tx = e.wait_tx(tid, "completed")
        eq(tx["retry_at"], None)
        eq(len(rec.find("POST", "/push")), 2, "neither dropped nor repeated")


@test
def retry_delay_is_durable_across_sigterm():
    durable_wait(lambda e: eq(e.stop(signal.SIGTERM), 0))


@test
def retry_delay_is_durable_across_kill_9():
    durable_wait(lambda e: e.kill())


@test
def on_error_and_on_failure():
    with Recorder() as rec, Engine() as e:
        e.write("alerts.lua", cycle("alerts", """
    hw.webhook { name = "in" },
"""))
        e.write("x.lua", cycle("x", """
    hw.webhook { name = "in" },
    hw.step { name = "boom", run = function(tx) error("kaboom " .. tx.data.n) end },
""", '\n  on_failure = { url = "%s/alert" },' % rec.url))
        e.write("y.lua", cycle("y", """
    hw.webhook { name = "in" },
    hw.step { name = "boom", run = function(tx) error("bang") end, on_error = "rescue" },
    hw.step { name = "skipped", run = function(tx) tx.data.skipped = true end },
    hw.step { name = "rescue", run = function(tx) tx.data.err = tx.error; error("still bad") end },
""", '\n  on_failure = { cycle = "alerts", hook = "in" },'))
        e.start()
        tid = e.post(e.hook_url("x", "in"), json={"n": 7}).json["transaction"]
        e.wait_tx(tid, "failed")
        got = rec.wait_for("POST", "/alert")[0].json
        eq(got["cycle"], "x")
        eq(got["transaction"], tid)
        eq(got["step"], "boom")
        contains(got["error"], "kaboom 7")
        eq(got["data"], {"n": 7})
        yid = e.post(e.hook_url("y", "in"), json={}).json["transaction"]
        ytx = e.wait_tx(yid, "failed")
        eq(ytx["step"], "rescue")
        eq(ytx["data"]["err"]["step"], "boom")
        contains(ytx["data"]["err"]["message"], "bang")
        ok("skipped" not in ytx["data"])
        alerts = wait_until(lambda: e.txs(cycle="alerts"), msg="an alert transaction")
        a = e.tx(alerts[0]["id"])
        eq(a["data"]["transaction"], yid)
        eq(a["data"]["cycle"], "y")
        eq(a["linked_from"]["transaction"], yid)
        contains(e.log(), "transaction %s of cycle 'y' failed" % yid)


@test
def policy_options_are_checked():
    bad = [
        ('hw.step { name = "s", run = function() end, retry = { attempts = 0 } }', "attempts"),
        ('hw.step { name = "s", run = function() end, retry = { attempts = 2, delays = { -1 } } }', "delay 1"),
        ('hw.step { name = "s", run = function() end, retry = { tries = 2 } }', "tries"),
        ('hw.step { name = "s", run = function() end, on_error = "in" }', "must come later"),
        ('hw.step { name = "s", run = function() end, on_error = "zz" }', "no step 'zz'"),
    ]
    with Engine() as e:
        for i, (step, want) in enumerate(bad):
            path = e.write("bad%d.lua" % i, cycle("bad%d" % i, '    hw.webhook { name = "in" },\n    ' + step + ","))
            r = run_cli(["check", path])
            eq(r.returncode, 1, step)
            contains(r.stderr, want)
        for extra, want in [('\n  keep = { waiting = 3 },', "waiting"),
                            ('\n  keep = { completed = "x" },', "keep.completed"),
                            ('\n  on_failure = { url = "ftp://x" },', "on_failure"),
                            ('\n  on_failure = { cycle = "z" },', "on_failure")]:
            path = e.write("k.lua", cycle("k", '    hw.webhook { name = "in" },', extra))
            r = run_cli(["check", path])
            eq(r.returncode, 1, extra)
            contains(r.stderr, want)


@test
def retention_deletes_exactly_what_is_older_than_keep():
    steps = """
    hw.webhook { name = "in" },
    hw.step { name = "s", run = function(tx) if tx.data.fail then error("no") end end },
"""
    with Engine({"k.lua": cycle("k", steps, "\n  keep = { completed = 3, failed = 3600 },"),
                 "w.lua": ORDERS},
                env={"HOOKWORK_KEEP_UNIT_SECONDS": "1"}) as e:
        e.start()
        url = e.hook_url("k", "in")
        old = [e.post(url, json={}).json["transaction"] for _ in range(5)]
        failed = e.post(url, json={"fail": True}).json["transaction"]
        waiting = e.post(e.hook_url("orders", "new"), json={"order_id": "W1"}).json["transaction"]
        e.post(e.hook_url("orders", "status"), json={"order_id": "W1"})
        time.sleep(2)
        new = [e.post(url, json={}).json["transaction"] for _ in range(5)]
        for i in old + new:
            e.wait_tx(i, "completed")
        # the old ones go 3 s after they ended; the new ones are kept for now
        wait_until(lambda: all(e._get_tx(i) is None for i in old), timeout=6, msg="old ones purged")
        ok(all(e._get_tx(i) is not None for i in new), "the newer ones are kept")
        eq(e.tx(failed)["state"], "failed", "failed keeps its own keep")
        eq(e.tx(waiting)["state"], "waiting", "waiting is kept until it ends")
        wait_until(lambda: all(e._get_tx(i) is None for i in new), timeout=8, msg="new ones purged later")
        eq(e.stop(), 0)
        gone = ",".join(old + new)
        eq(e.db_rows("SELECT count(*) FROM hist WHERE tx IN (%s)" % gone)[0][0], 0, "history")
        eq(e.db_rows("SELECT count(*) FROM tx WHERE id IN (%s)" % gone)[0][0], 0)
        ok(e.db_rows("SELECT count(*) FROM hist WHERE tx = ?", (int(waiting),))[0][0] > 0)
        eq(e.db_rows("SELECT count(*) FROM req WHERE tx = ?", (int(waiting),))[0][0], 1)
        # exactly those: the failed one (keep 3600) and the waiting one stay
        eq(sorted(r[0] for r in e.db_rows("SELECT id FROM tx")), sorted([int(failed), int(waiting)]))


@test
def store_file_stops_growing_under_steady_load():
    not_on_postgres("the size of hookwork.db; PostgreSQL reuses the space of deleted rows "
                    "through autovacuum, on its own schedule")
    with Engine({"k.lua": cycle("k", '    hw.webhook { name = "in" },',
                                "\n  keep = { completed = 1 },")},
                env={"HOOKWORK_KEEP_UNIT_SECONDS": "1"}) as e:
        e.start()
        url = e.hook_url("k", "in")
        pad = "x" * 2000
        sizes = []
        for _ in range(8):
            for _ in range(150):
                e.post(url, json={"pad": pad})
            time.sleep(1.5)
            sizes.append(os.path.getsize(os.path.join(e.data_dir, "hookwork.db")))
        ok(sizes[-1] <= sizes[3] * 1.25, "the file plateaus: %s" % sizes)


@test
def harness_drives_retry_delays_retry_and_cancel():
    r = run_cli(["test", os.path.join(HERE, "ops_cycles")], timeout=60)
    eq(r.returncode, 0, r.stdout + r.stderr)
    contains(r.stdout, "4 passed, 0 failed")


@test
def headers_read_by_verify_are_redacted():
    steps = """
    hw.webhook { name = "in", verify = hw.verify.header { name = "X-Token", value = "tok-123" } },
"""
    with Engine({"v.lua": cycle("v", steps)}) as e:
        e.start()
        r = e.post(e.hook_url("v", "in"), json={"a": 1}, headers={"X-Token": "tok-123", "X-Other": "o"})
        eq(r.status, 202, r.text)
        tx = e.wait_tx(r.json["transaction"], "completed")
        eq(tx["request"]["headers"]["x-token"], "[redacted]")
        eq(tx["request"]["headers"]["x-other"], "o")
        ok("tok-123" not in e.admin("GET", "/api/transactions/" + tx["id"]).text)
        eq(e.post(e.hook_url("v", "in"), json={}, headers={"X-Token": "bad"}).status, 401)
        rej = e.admin("GET", "/api/rejections").json
        eq(rej[0]["status"], 401)
        eq(e.log().count("v/in: 401 for"), 1, "one log line per rejection")
        # replay skips verification: the stored request runs again
        r = admin_post(e, "/api/transactions/%s/replay" % tx["id"])
        eq(r.status, 202, r.text)
        eq(e.wait_tx(r.json["transaction"], "completed")["data"], {"a": 1})


@test
def retention_deletes_dedupe_keys_with_their_transactions():
    steps = """
    hw.webhook { name = "in", dedupe = { header = "x-id" } },
"""
    with Engine({"d.lua": cycle("d", steps, "\n  keep = { completed = 2 },")},
                env={"HOOKWORK_KEEP_UNIT_SECONDS": "1"}) as e:
        e.start()
        url = e.hook_url("d", "in")
        first = e.post(url, json={}, headers={"X-Id": "k1"}).json["transaction"]
        eq(e.post(url, json={}, headers={"X-Id": "k1"}).json.get("duplicate"), True)
        e.wait_tx(first, "completed")
        other = e.post(url, json={}, headers={"X-Id": "k2"}).json["transaction"]
        wait_until(lambda: e._get_tx(first) is None, timeout=8, msg="purged")
        eq(e.stop(), 0)
        eq(e.db_rows("SELECT count(*) FROM dedupe WHERE tx = ?", (int(first),))[0][0], 0)
        eq(e.db_rows("SELECT count(*) FROM tx WHERE id = ?", (int(other),))[0][0],
           e.db_rows("SELECT count(*) FROM dedupe WHERE tx = ?", (int(other),))[0][0],
           "a key stays as long as its transaction")


@test
def operations_are_answered_only_after_their_commit():
    """While the store cannot commit, cancel/retry/replay answer 503 and
    change nothing; once it recovers they work."""
    from storefault import StoreFault
    e = Engine({"orders.lua": ORDERS, "a.lua": LINKER, "b.lua": TARGET})
    fault = StoreFault(e)
    with e:
        e.start()
        waiting = e.post(e.hook_url("orders", "new"), json={"order_id": "F1"}).json["transaction"]
        failed = e.post(e.hook_url("a", "in"), json={"order": "F2"}).json["transaction"]
        e.wait_tx(waiting, "waiting")
        e.wait_tx(failed, "failed")
        fault.set("eio")
        time.sleep(0.1)
        for path in ("/api/transactions/%s/cancel" % waiting, "/api/transactions/%s/retry" % failed,
                     "/api/transactions/%s/replay" % waiting):
            r = admin_post(e, path)
            eq(r.status, 503, "%s: %s" % (path, r.text))
            contains(r.json["error"], "store unavailable")
        fault.set("ok")
        wait_until(lambda: admin_post(e, "/api/transactions/%s/cancel" % waiting).status == 200,
                   timeout=15, msg="the store works again")
        eq(e.tx(failed)["state"], "failed", "the refused retry changed nothing")
        eq(e.tx(failed)["runs"], 1)
        eq(len(e.txs(cycle="orders")), 1, "the refused replay made no transaction")
        e.kill()
        e.start()
        eq(e.tx(waiting)["state"], "cancelled")
        eq(e.tx(failed)["state"], "failed")


@test
def search_finds_strings_the_sender_escaped():
    # The C accept path keeps a body's strings as sent ("\u00e9" stays six
    # characters in the stored data); q= compares the decoded value, so a
    # search finds it whichever way the sender wrote it.
    with Engine({"orders.lua": ORDERS}) as e:
        e.start()
        url = e.hook_url("orders", "new")
        raw = '{"order_id":"SO-E","customer":{"name":"Ren\\u00e9 \\"R\\" \\\\ \\u2028"}}'
        r = e.post(url, body=raw, headers={"Content-Type": "application/json"})
        eq(r.status, 202, r.text)
        plain = e.post(url, json={"order_id": "SO-P", "customer": {"name": "Rene"}})
        eq(plain.status, 202, plain.text)
        e.wait_tx(r.json["transaction"], "waiting")
        e.wait_tx(plain.json["transaction"], "waiting")
        want = 'René "R" \\ \u2028'
        found = e.txs(q="customer.name=" + want)
        eq([t["id"] for t in found], [r.json["transaction"]], "the escaped string is found by its value")
        eq([t["id"] for t in e.txs(q="customer.name=Rene")], [plain.json["transaction"]])
        eq(e.txs(q="customer.name=Ren\\u00e9"), [], "the escape itself is not the value")
