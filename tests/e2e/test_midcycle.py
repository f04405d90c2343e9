"""Issue 5: mid-cycle webhooks — parking, Webhook Mapping, repeated resumes in order,
durability across restarts, expiry, synchronous resume. Black-box."""

import json
import time

from lib import (cycle, Engine, Recorder, RawConn, test, eq, ok, contains, wait_until, lua_str,
                 parse_responses, accepted, hist, park, wait_run)


def orders(rec_url, status_extra=""):
    return cycle("orders", """
    hw.webhook { name = "new order", fields = { order_id = "string" } },
    hw.step { name = "init", run = function(tx) tx.data.counter = 0 end },
    hw.webhook { name = "status", match = "order_id",
                 fields = { order_id = "string", status = "string" }%(extra)s },
    hw.step { name = "count", run = function(tx) tx.data.counter = tx.data.counter + 1 end },
    hw.decision { name = "despatched?",
                  test = function(tx) return tx.data.status == "Despatched" end, on_false = "stop" },
    hw.request { name = "tell erp", method = "POST", url = %(u)s .. "/erp/despatched",
                 json = function(tx) return { order = tx.data.order_id, counter = tx.data.counter,
                                              status = tx.data.status } end },
""" % {"u": lua_str(rec_url), "extra": status_extra})


# ------------------------------------------------------------------ park and resume

@test
def park_and_resume_by_match():
    with Recorder() as rec:
        with Engine({"orders.lua": orders(rec.url)}) as e:
            e.start()
            tid = park(e, "A1")
            t = e.tx(tid)
            eq(hist(t), [("new order", "ok", 1), ("init", "ok", 1), ("status", "parked", 1)])
            eq(t["data"], {"order_id": "A1", "counter": 0})
            waiting = e.txs(state="waiting")
            eq([w["id"] for w in waiting], [tid])
            eq(waiting[0]["step"], "status")
            ok("A1" in json.dumps(waiting[0]), "waiting listing shows the match value", waiting[0])
            eq(e.cycle("orders")["counts"]["waiting"], 1)
            hooks = {w["step"]: w for w in e.cycle("orders")["webhooks"]}
            ok("status" in hooks and hooks["status"]["url"] != hooks["new order"]["url"],
               "the mid-cycle webhook has its own URL", hooks)
            r = e.post(e.hook_url("orders", "status"), json={"order_id": "A1", "status": "Despatched"})
            eq(accepted(r), tid, "the resuming call answers 202 with the parked transaction's id")
            got = rec.wait_for("POST", "/erp/despatched")
            eq(got[0].json, {"order": "A1", "counter": 1, "status": "Despatched"})
            t = wait_run(e, tid, 2, "tell erp")
            eq(t["state"], "waiting", "stays waiting after a resumed run")
            eq(t["step"], "status")
            eq([h for h in hist(t) if h[2] == 2][-3:],
               [("count", "ok", 2), ("despatched?", "ok", 2), ("tell erp", "ok", 2)])


@test
def four_status_updates_decision_passes_last():
    with Recorder() as rec:
        with Engine({"orders.lua": orders(rec.url)}) as e:
            e.start()
            tid = park(e, "A1")
            other = park(e, "B2")
            url = e.hook_url("orders", "status")
            statuses = ["Received", "Packed", "Picked", "Despatched"]
            for n, s in enumerate(statuses, start=2):
                eq(accepted(e.post(url, json={"order_id": "A1", "status": s})), tid)
                wait_run(e, tid, n, "despatched?")
            rec.wait_for("POST", "/erp/despatched")
            t = wait_run(e, tid, 5, "tell erp")
            time.sleep(0.2)
            got = rec.find("POST", "/erp/despatched")
            eq(len(got), 1, "only Despatched passes the decision")
            eq(got[0].json, {"order": "A1", "counter": 1, "status": "Despatched"})
            t = e.tx(tid)
            eq(t["state"], "waiting")
            runs = [h[2] for h in hist(t)]
            eq(sorted(set(runs)), [1, 2, 3, 4, 5], "one run per resume, numbered from 1")
            eq(runs, sorted(runs), "run numbers grow through the history")
            dec = [h[1] for h in hist(t) if h[0] == "despatched?"]
            eq(dec, ["stopped", "stopped", "stopped", "ok"])
            eq(len(e.tx(other)["history"]), 3, "the other order was not touched")


@test
def back_to_back_updates_run_one_at_a_time_in_order():
    with Recorder() as rec:
        rec.route("POST", "/begin", delay=0.3)
        src = cycle("seq", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "status", match = "order_id", fields = { order_id = "string", status = "string" } },
    hw.step { name = "begin", run = function(tx)
      hw.http.post(%(u)s .. "/begin", { json = { status = tx.data.status } })
    end },
    hw.step { name = "count", run = function(tx) tx.data.counter = (tx.data.counter or 0) + 1 end },
    hw.step { name = "finish", run = function(tx)
      hw.http.post(%(u)s .. "/end", { json = { status = tx.data.status, counter = tx.data.counter } })
    end },
""" % {"u": lua_str(rec.url)})
        with Engine({"seq.lua": src}) as e:
            e.start()
            tid = park(e, "A1", cycle_name="seq", hook="new")
            path = e.hook_path("seq", "status")
            statuses = ["Received", "Packed", "Picked", "Despatched"]
            data = b""
            for s in statuses:
                body = json.dumps({"order_id": "A1", "status": s}).encode()
                data += ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: %d\r\n\r\n" % (path, len(body))).encode() + body
            t0 = time.time()
            with RawConn(e.port) as c:
                c.send(data)
                rs = c.read_responses(4, timeout=10)
            eq([r.status for r in rs], [202] * 4, "all four acknowledged")
            eq([r.json["transaction"] for r in rs], [tid] * 4)
            ok(time.time() - t0 < 1.0, "acknowledged without waiting for earlier runs")
            rec.wait_for("POST", "/end", count=4, timeout=15)
            seq = [(r.path, r.json["status"]) for r in rec.requests if r.path in ("/begin", "/end")]
            expected = []
            for s in statuses:
                expected += [("/begin", s), ("/end", s)]
            eq(seq, expected, "runs never overlap and follow arrival order")
            eq([r.json["counter"] for r in rec.find("POST", "/end")], [1, 1, 1, 1],
               "each run starts from the parked snapshot")
            wait_run(e, tid, 5, "finish")


@test
def each_run_starts_from_parked_snapshot():
    with Recorder() as rec:
        src = cycle("snap", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.step { name = "init", run = function(tx) tx.data.counter = 0; tx.data.base = "kept" end },
    hw.webhook { name = "status", match = "order_id", fields = { order_id = "string", status = "string" } },
    hw.step { name = "count", run = function(tx)
      tx.data.counter = tx.data.counter + 1
      tx.data.seen_prev = tx.data.prev
      tx.data.prev = tx.data.status
    end },
    hw.request { name = "tell", method = "POST", url = %s .. "/tell",
                 json = function(tx) return { counter = tx.data.counter, status = tx.data.status,
                                              seen_prev = tx.data.seen_prev, base = tx.data.base } end },
""" % lua_str(rec.url))
        with Engine({"snap.lua": src}) as e:
            e.start()
            tid = park(e, "A1", cycle_name="snap", hook="new")
            url = e.hook_url("snap", "status")
            for n, s in enumerate(["one", "two", "three"], start=2):
                eq(accepted(e.post(url, json={"order_id": "A1", "status": s})), tid)
                wait_run(e, tid, n, "tell")
            got = [r.json for r in rec.wait_for("POST", "/tell", count=3)]
            eq(got, [{"counter": 1, "status": s, "base": "kept"} for s in ["one", "two", "three"]],
               "every run sees the parked data plus its request, nothing from earlier runs")


@test
def most_recently_parked_resumes():
    with Recorder() as rec:
        with Engine({"orders.lua": orders(rec.url)}) as e:
            e.start()
            t1 = park(e, "A1")
            time.sleep(0.05)
            t2 = park(e, "A1")
            t3 = park(e, "B2")
            r = e.post(e.hook_url("orders", "status"), json={"order_id": "A1", "status": "Despatched"})
            eq(accepted(r), t2, "the most recently parked matching transaction resumes")
            wait_run(e, t2, 2, "tell erp")
            eq(len(rec.wait_for("POST", "/erp/despatched")), 1)
            time.sleep(0.2)
            eq(len(rec.find("POST", "/erp/despatched")), 1)
            ok(all(h[2] == 1 for h in hist(e.tx(t1))), "older transaction not resumed", hist(e.tx(t1)))
            ok(all(h[2] == 1 for h in hist(e.tx(t3))), "other value not resumed")
            eq(e.tx(t1)["state"], "waiting")


@test
def match_with_different_field_names():
    with Recorder() as rec:
        src = cycle("mapped", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "update", match = { request = "ref", transaction = "order_id" },
                 fields = { ref = "string", status = "string" } },
    hw.request { name = "tell", method = "POST", url = %s .. "/tell",
                 json = function(tx) return { order = tx.data.order_id, ref = tx.data.ref,
                                              status = tx.data.status } end },
""" % lua_str(rec.url))
        with Engine({"mapped.lua": src}) as e:
            e.start()
            tb = park(e, "B7", cycle_name="mapped", hook="new", wait_step="update")
            tc = park(e, "C8", cycle_name="mapped", hook="new", wait_step="update")
            url = e.hook_url("mapped", "update")
            eq(accepted(e.post(url, json={"ref": "B7", "status": "ok"})), tb)
            got = rec.wait_for("POST", "/tell")
            eq(got[0].json, {"order": "B7", "ref": "B7", "status": "ok"})
            n0 = len(e.txs(limit=1000))
            r = e.post(url, json={"ref": "ZZ", "status": "x"})
            eq(r.status, 404, "no match (body %r)" % r.body)
            ok(isinstance((r.json or {}).get("error"), str), "404 body has error", r.body)
            contains(r.json["error"], "no waiting transaction with ")
            contains(r.json["error"], "ZZ")
            eq(r.status, 404)
            eq(e.post(url, json={"order_id": "C8", "status": "x"}).status, 400,
               "the request field is 'ref'")
            eq(len(e.txs(limit=1000)), n0)
            ok(all(h[2] == 1 for h in hist(e.tx(tc))), "C8 not resumed")


@test
def no_match_404_stores_nothing():
    with Recorder() as rec:
        with Engine({"orders.lua": orders(rec.url)}) as e:
            e.start()
            tid = park(e, "A1")
            url = e.hook_url("orders", "status")
            before = e.txs(limit=1000)
            h_before = e.tx(tid)["history"]
            r = e.post(url, json={"order_id": "ZZ", "status": "Despatched"})
            eq(r.status, 404)
            eq(r.json, {"error": "no waiting transaction with order_id = ZZ"})
            eq(e.post(url, json={"status": "Despatched"}).status, 400, "match field missing")
            eq(e.txs(limit=1000), before, "nothing stored")
            eq(e.tx(tid)["history"], h_before, "parked transaction untouched")
            eq(rec.find("POST", "/erp/despatched"), [])


@test
def completed_transaction_does_not_match():
    if True:
        src = cycle("once", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.decision { name = "park?", test = function(tx) return tx.data.order_id ~= "done" end,
                  on_false = "stop" },
    hw.webhook { name = "status", match = "order_id" },
    hw.step { name = "s", run = function(tx) end },
""")
        with Engine({"once.lua": src}) as e:
            e.start()
            t = e.wait_tx(accepted(e.post(e.hook_url("once", "new"), json={"order_id": "done"})), "completed")
            r = e.post(e.hook_url("once", "status"), json={"order_id": "done"})
            eq(r.status, 404)
            eq(r.json, {"error": "no waiting transaction with order_id = done"})


# ------------------------------------------------------------------ durability

@test
def resume_after_sigterm_restart():
    with Recorder() as rec:
        with Engine({"orders.lua": orders(rec.url)}) as e:
            e.start()
            tid = park(e, "A1")
            url = e.hook_url("orders", "status")
            eq(e.restart(), 0)
            t = e.tx(tid)
            eq(t["state"], "waiting", "still parked after restart")
            eq(t["step"], "status")
            eq(e.hook_url("orders", "status"), url, "mid-cycle URL stable across restart")
            eq(accepted(e.post(url, json={"order_id": "A1", "status": "Despatched"})), tid)
            got = rec.wait_for("POST", "/erp/despatched")
            eq(got[0].json, {"order": "A1", "counter": 1, "status": "Despatched"})
            t = wait_run(e, tid, 2, "tell erp")
            eq(t["state"], "waiting")


@test
def resume_after_kill9_restart():
    with Recorder() as rec:
        with Engine({"orders.lua": orders(rec.url)}) as e:
            e.start()
            tid = park(e, "A1")
            e.kill()
            e.start()
            t = e.tx(tid)
            eq(t["state"], "waiting", "still parked after kill -9")
            eq(accepted(e.post(e.hook_url("orders", "status"),
                               json={"order_id": "A1", "status": "Despatched"})), tid)
            got = rec.wait_for("POST", "/erp/despatched")
            eq(got[0].json, {"order": "A1", "counter": 1, "status": "Despatched"})


@test
def acknowledged_resume_survives_kill9():
    with Recorder() as rec:
        rec.route("GET", "/slow", delay=1.0)
        src = cycle("crashy", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "status", match = "order_id", fields = { order_id = "string", status = "string" } },
    hw.step { name = "slow", run = function(tx) hw.http.get(%(u)s .. "/slow") end },
    hw.request { name = "tell", method = "POST", url = %(u)s .. "/tell",
                 json = function(tx) return { status = tx.data.status } end },
""" % {"u": lua_str(rec.url)})
        with Engine({"crashy.lua": src}) as e:
            e.start()
            tid = park(e, "A1", cycle_name="crashy", hook="new")
            eq(accepted(e.post(e.hook_url("crashy", "status"), json={"order_id": "A1", "status": "S1"})), tid)
            e.kill()
            ok(not rec.find("POST", "/tell"), "killed before the run ended")
            e.start()
            got = rec.wait_for("POST", "/tell", timeout=15)
            eq(got[0].json, {"status": "S1"}, "the acknowledged resume ran to its end after restart")
            t = wait_run(e, tid, 2, "tell")
            eq(t["state"], "waiting")


# ------------------------------------------------------------------ expiry

@test
def expires_then_404():
    with Recorder() as rec:
        with Engine({"orders.lua": orders(rec.url, ", expires = 1")}) as e:
            e.start()
            t0 = time.time()
            tid = park(e, "A1")
            t = e.wait_tx(tid, "expired", timeout=5)
            dt = time.time() - t0
            ok(0.9 <= dt <= 3.0, "expired about `expires` seconds after parking (%.2fs)" % dt)
            eq([x["id"] for x in e.txs(state="expired")], [tid])
            eq(e.txs(state="waiting"), [])
            r = e.post(e.hook_url("orders", "status"), json={"order_id": "A1", "status": "Despatched"})
            eq(r.status, 404, "an expired transaction no longer matches")
            eq(r.json, {"error": "no waiting transaction with order_id = A1"})
            eq(e.cycle("orders")["counts"]["expired"], 1)
            eq(rec.find("POST", "/erp/despatched"), [])


@test
def expiry_across_restart():
    with Recorder() as rec:
        with Engine({"orders.lua": orders(rec.url, ", expires = 2")}) as e:
            e.start()
            tid = park(e, "A1")
            eq(e.stop(), 0)
            time.sleep(2.5)
            e.start()
            e.wait_tx(tid, "expired", timeout=4)
            r = e.post(e.hook_url("orders", "status"), json={"order_id": "A1", "status": "Despatched"})
            eq(r.status, 404)
            tid2 = park(e, "A2")
            e.kill()
            e.start()
            eq(e.tx(tid2)["state"], "waiting")
            e.wait_tx(tid2, "expired", timeout=5)


# ------------------------------------------------------------------ synchronous resume

@test
def synchronous_resume_with_respond():
    src = cycle("ask", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.step { name = "init", run = function(tx) tx.data.n = 10 end },
    hw.webhook { name = "ask", match = "order_id", fields = { order_id = "string", q = "string" } },
    hw.decision { name = "go?", test = function(tx) return tx.data.q ~= "stop" end, on_false = "stop" },
    hw.step { name = "calc", run = function(tx) tx.data.n = tx.data.n + 1 end },
    hw.respond { name = "answer", status = 200,
                 body = function(tx) return { id = tx.id, q = tx.data.q, n = tx.data.n } end },
    hw.step { name = "after", run = function(tx) tx.data.after = true end },
""")
    with Engine({"ask.lua": src}) as e:
        e.start()
        tid = park(e, "A1", cycle_name="ask", hook="new", wait_step="ask")
        url = e.hook_url("ask", "ask")
        r = e.post(url, json={"order_id": "A1", "q": "hi"})
        eq(r.status, 200, "body %r" % r.body)
        eq(r.json, {"id": tid, "q": "hi", "n": 11})
        r = e.post(url, json={"order_id": "A1", "q": "again"})
        eq(r.status, 200)
        eq(r.json, {"id": tid, "q": "again", "n": 11}, "second resume from the same snapshot")
        t = wait_run(e, tid, 3, "after")
        eq(t["state"], "waiting")
        eq([h[1] for h in hist(t) if h[0] == "answer"], ["responded", "responded"])
        r = e.post(url, json={"order_id": "A1", "q": "stop"})
        eq(r.status, 200, "run ended before respond (body %r)" % r.body)
        eq(r.json, {"transaction": tid, "state": "waiting"})
        r = e.post(url, json={"order_id": "nope", "q": "x"})
        eq(r.status, 404)
        eq(r.json, {"error": "no waiting transaction with order_id = nope"})
