"""Issue 13: waiting beyond the first contract — early arrivals (`early`), `pick`,
`resume_with = "latest"`, `hw.finish`, `on_sync_timeout = "accept"` with status URLs,
the no-match 404 naming the request's field; and the matching bugs of issue 10
(expiry racing a re-park, a spurious 404 while an older candidate waits, duplicate
run numbers, unbounded queues).  Black-box over real HTTP."""

import json
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.parse

from storefault import StoreFault
from lib import (cycle, Engine, Recorder, RawConn, test, eq, ok, contains, wait_until, lua_str, on_postgres,
                 http_request, run_cli, REPO, accepted, hist, park, wait_run)




def buffered(r, msg=""):
    eq(r.status, 202, (msg + ": " if msg else "") + "status (body %r)" % r.body)
    eq(r.json, {"accepted": True, "buffered": True})








def metric(e, name, **labels):
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for ln in e.metrics().splitlines():
        m = re.match(r'^%s\{(.*)\} (\S+)$' % re.escape(name), ln)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0


def carrier(rec_url, opts="early = 30", name="carrier"):
    """Order -> booking call -> waits for the carrier's callbacks (`reference`)."""
    return cycle(name, """
    hw.webhook { name = "order", fields = { order_id = "string" } },
    hw.step { name = "book", run = function(tx)
      hw.http.post(%(u)s .. "/book", { json = { order = tx.data.order_id } })
    end },
    hw.webhook { name = "tracking", match = { request = "reference", transaction = "order_id" },
                 fields = { reference = "string", status = "string" }, %(opts)s },
    hw.step { name = "tell", run = function(tx)
      hw.http.post(%(u)s .. "/status", { json = { order = tx.data.order_id, status = tx.data.status,
                                                  run = tx.run } })
    end },
""" % {"u": lua_str(rec_url), "opts": opts})


# ------------------------------------------------------------------ early

@test
def callback_before_the_park_is_delivered_after_it():
    with Recorder() as rec:
        rec.route("POST", "/book", delay=1.0)
        with Engine({"carrier.lua": carrier(rec.url)}) as e:
            e.start()
            tid = accepted(e.post(e.hook_url("carrier", "order"), json={"order_id": "SO-1"}))
            rec.wait_for("POST", "/book")
            r = e.post(e.hook_url("carrier", "tracking"), json={"reference": "SO-1", "status": "Collected"})
            buffered(r, "the transaction has not parked yet")
            eq(e.tx(tid)["state"], "running")
            got = rec.wait_for("POST", "/status", timeout=10)
            eq(got[0].json, {"order": "SO-1", "status": "Collected", "run": 2})
            t = wait_run(e, tid, 2, "tell")
            eq(t["state"], "waiting")
            parked = [h for h in t["history"] if h["status"] == "parked"]
            eq(len(parked), 1)
            contains(parked[0].get("note") or "", "1 kept requests delivered")
            eq(metric(e, "hookwork_buffered_total", cycle="carrier", step="tracking"), 1.0)
            eq(metric(e, "hookwork_buffered_expired_total", cycle="carrier", step="tracking"), 0.0)
            time.sleep(0.3)
            eq(len(rec.find("POST", "/status")), 1, "delivered exactly once")
            # after the park a callback resumes directly
            eq(accepted(e.post(e.hook_url("carrier", "tracking"),
                               json={"reference": "SO-1", "status": "Delivered"})), tid)
            wait_run(e, tid, 3, "tell")


@test
def kept_request_whose_window_runs_out_is_dropped_and_counted():
    with Recorder() as rec:
        with Engine({"carrier.lua": carrier(rec.url, "early = 1")}) as e:
            e.start()
            url = e.hook_url("carrier", "tracking")
            buffered(e.post(url, json={"reference": "SO-2", "status": "Collected"}))
            buffered(e.post(url, json={"reference": "SO-9", "status": "Collected"}),
                     "with early set, an unknown value is kept, never 404")
            wait_until(lambda: metric(e, "hookwork_buffered_expired_total", cycle="carrier",
                                      step="tracking") == 2.0, timeout=6, msg="two kept requests dropped")
            tid = park(e, "SO-2", "carrier", "order", "tracking")
            time.sleep(1.0)
            eq(rec.find("POST", "/status"), [], "a dropped request is never delivered")
            t = e.tx(tid)
            eq(t["runs"], 1)
            eq(t["state"], "waiting")
            # the count survives in the metric; a restart drops nothing else
            eq(e.restart(), 0)
            time.sleep(0.8)
            eq(rec.find("POST", "/status"), [])


@test
def three_kept_updates_run_in_arrival_order_never_overlapping():
    with Recorder() as rec:
        rec.route("POST", "/book", delay=1.5)
        rec.route("POST", "/status", delay=0.2)
        with Engine({"carrier.lua": carrier(rec.url)}) as e:
            e.start()
            tid = accepted(e.post(e.hook_url("carrier", "order"), json={"order_id": "SO-3"}))
            url = e.hook_url("carrier", "tracking")
            for s in ["Collected", "In transit", "Out for delivery"]:
                buffered(e.post(url, json={"reference": "SO-3", "status": s}))
            got = rec.wait_for("POST", "/status", count=3, timeout=15)
            eq([(g.json["status"], g.json["run"]) for g in got],
               [("Collected", 2), ("In transit", 3), ("Out for delivery", 4)])
            for a, b in zip(got, got[1:]):
                ok(b.time - a.time >= 0.19, "runs of one transaction never overlap",
                   [g.time for g in got])
            wait_run(e, tid, 4, "tell")
            eq(accepted(e.post(url, json={"reference": "SO-3", "status": "Delivered"})), tid)
            got = rec.wait_for("POST", "/status", count=4)
            eq(got[3].json, {"order": "SO-3", "status": "Delivered", "run": 5})


@test
def kept_requests_survive_kill9_and_are_delivered_in_order():
    with Recorder() as rec:
        with Engine({"carrier.lua": carrier(rec.url, "early = 60")}) as e:
            e.start()
            url = e.hook_url("carrier", "tracking")
            buffered(e.post(url, json={"reference": "SO-4", "status": "one"}))
            buffered(e.post(url, json={"reference": "SO-4", "status": "two"}))
            e.kill()
            e.start()
            tid = accepted(e.post(e.hook_url("carrier", "order"), json={"order_id": "SO-4"}))
            got = rec.wait_for("POST", "/status", count=2, timeout=10)
            eq([(g.json["status"], g.json["run"]) for g in got], [("one", 2), ("two", 3)])
            wait_run(e, tid, 3, "tell")
            # delivered once: a second restart delivers nothing again
            e.kill()
            e.start()
            time.sleep(1.0)
            eq(len(rec.find("POST", "/status")), 2)


@test
def kill9_between_delivery_and_run_end_runs_each_kept_request_once():
    with Recorder() as rec:
        rec.route("POST", "/status", delay=1.0)
        with Engine({"carrier.lua": carrier(rec.url, "early = 60")}) as e:
            e.start()
            url = e.hook_url("carrier", "tracking")
            for s in ["one", "two"]:
                buffered(e.post(url, json={"reference": "SO-5", "status": s}))
            tid = accepted(e.post(e.hook_url("carrier", "order"), json={"order_id": "SO-5"}))
            rec.wait_for("POST", "/status")
            e.kill()   # run 2 is inside its call, run 3 is queued
            rec.route("POST", "/status", delay=0)
            e.start()
            t = wait_run(e, tid, 3, "tell", timeout=15)
            statuses = [g.json["status"] for g in rec.find("POST", "/status")]
            eq(statuses[-2:], ["one", "two"], "after the restart both runs end, in order")
            eq(statuses.count("two"), 1)
            eq(t["runs"], 3)


# ------------------------------------------------------------------ pick

def pick_cycles():
    out = {}
    for mode in ["most_recent", "oldest", "all", "only"]:
        out["p_%s.lua" % mode] = cycle("p_" + mode, """
    hw.webhook { name = "new", fields = { order_id = "string", n = "integer" } },
    hw.webhook { name = "status", match = "order_id", pick = %s,
                 fields = { order_id = "string", status = "string" } },
    hw.step { name = "s", run = function(tx) tx.data.seen = tx.data.status end },
""" % lua_str(mode))
    return out


def park_many(e, mode, order_id, n):
    ids = []
    for i in range(n):
        tid = accepted(e.post(e.hook_url("p_" + mode, "new"), json={"order_id": order_id, "n": i}))
        e.wait_tx(tid, "waiting")
        ids.append(tid)
        time.sleep(0.02)
    return ids


def resumed(e, ids):
    return [i for i in ids if any(h[2] == 2 for h in hist(e.tx(i)))]


@test
def pick_modes_with_two_and_three_candidates():
    with Engine(pick_cycles()) as e:
        e.start()
        for n in (2, 3):
            v = "V%d" % n
            # most_recent (the default)
            ids = park_many(e, "most_recent", v, n)
            eq(accepted(e.post(e.hook_url("p_most_recent", "status"), json={"order_id": v, "status": "x"})),
               ids[-1])
            wait_run(e, ids[-1], 2, "s")
            eq(resumed(e, ids), [ids[-1]])
            # oldest
            ids = park_many(e, "oldest", v, n)
            eq(accepted(e.post(e.hook_url("p_oldest", "status"), json={"order_id": v, "status": "x"})), ids[0])
            wait_run(e, ids[0], 2, "s")
            eq(resumed(e, ids), [ids[0]])
            # all
            ids = park_many(e, "all", v, n)
            r = e.post(e.hook_url("p_all", "status"), json={"order_id": v, "status": "x"})
            eq(r.status, 202, r.body)
            eq(sorted(r.json), ["accepted", "transactions"])
            eq(sorted(r.json["transactions"], key=int), ids, "the answer lists every match")
            for i in ids:
                t = wait_run(e, i, 2, "s")
                eq(t["data"]["seen"], "x")
            eq(resumed(e, ids), ids)
            # only
            ids = park_many(e, "only", v, n)
            before = [e.tx(i)["history"] for i in ids]
            r = e.post(e.hook_url("p_only", "status"), json={"order_id": v, "status": "x"})
            eq(r.status, 409, r.body)
            eq(r.json, {"error": "%d transactions wait with order_id = %s" % (n, v)})
            eq([e.tx(i)["history"] for i in ids], before, "a 409 changes nothing")
        # only, with one match: it runs
        ids = park_many(e, "only", "V1", 1)
        eq(accepted(e.post(e.hook_url("p_only", "status"), json={"order_id": "V1", "status": "x"})), ids[0])
        wait_run(e, ids[0], 2, "s")
        # pick modes survive a kill -9 (the parks are in the store)
        ids = park_many(e, "oldest", "K", 2)
        e.kill()
        e.start()
        eq(accepted(e.post(e.hook_url("p_oldest", "status"), json={"order_id": "K", "status": "x"})), ids[0])


@test
def bad_webhook_options_fail_to_load_naming_the_option():
    bad = {
        'pick = "newest"': "'pick' must be",
        'early = -1': "'early' must be a positive number",
        'early = "10"': "'early' must be number",
        'resume_with = "last"': "'resume_with' must be",
    }
    tmp = tempfile.mkdtemp(prefix="hookwork-e2e-")
    for opt, msg in bad.items():
        path = os.path.join(tmp, "bad.lua")
        with open(path, "w") as f:
            f.write(cycle("bad", """
    hw.webhook { name = "new" },
    hw.webhook { name = "w", match = "id", %s },
""" % opt))
        r = run_cli(["check", path])
        eq(r.returncode, 1, opt)
        contains(r.stderr, msg, opt)
        contains(r.stderr, "bad.lua:", opt)
    with open(os.path.join(tmp, "bad.lua"), "w") as f:
        f.write(cycle("bad", """
    hw.webhook { name = "new", early = 5 },
"""))
    r = run_cli(["check", os.path.join(tmp, "bad.lua")])
    eq(r.returncode, 1)
    contains(r.stderr, "'early' applies to mid-cycle webhooks")
    with open(os.path.join(tmp, "bad.lua"), "w") as f:
        f.write(cycle("bad", """
    hw.webhook { name = "new" },
    hw.finish { name = "end", state = "waiting" },
"""))
    r = run_cli(["check", os.path.join(tmp, "bad.lua")])
    eq(r.returncode, 1)
    contains(r.stderr, "hw.finish: 'state' must be")
    with open(os.path.join(tmp, "bad.lua"), "w") as f:
        f.write(cycle("bad", """
    hw.webhook { name = "new" },
""", extra='\n  on_sync_timeout = "later",'))
    r = run_cli(["check", os.path.join(tmp, "bad.lua")])
    eq(r.returncode, 1)
    contains(r.stderr, "'on_sync_timeout' must be")


# ------------------------------------------------------------------ resume_with, finish, 404

@test
def resume_with_latest_keeps_a_value_across_three_resumes_and_a_kill9():
    with Recorder() as rec:
        src = cycle("track", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.step { name = "init", run = function(tx) tx.data.count = 0; tx.data.seen = "" end },
    hw.webhook { name = "update", match = "order_id", resume_with = "latest",
                 fields = { order_id = "string", status = "string", tracking_no = "string?" } },
    hw.step { name = "count", run = function(tx)
      tx.data.count = tx.data.count + 1
      tx.data.seen = tx.data.seen .. tx.data.status
    end },
    hw.request { name = "tell", method = "POST", url = %s .. "/tell",
                 json = function(tx) return { count = tx.data.count, seen = tx.data.seen,
                                              tracking_no = tx.data.tracking_no } end },
""" % lua_str(rec.url))
        with Engine({"track.lua": src}) as e:
            e.start()
            tid = park(e, "A1", "track", "new", "update")
            url = e.hook_url("track", "update")
            eq(accepted(e.post(url, json={"order_id": "A1", "status": "a", "tracking_no": "T1"})), tid)
            wait_run(e, tid, 2, "tell")
            eq(accepted(e.post(url, json={"order_id": "A1", "status": "b"})), tid)
            wait_run(e, tid, 3, "tell")
            e.kill()
            e.start()
            eq(accepted(e.post(url, json={"order_id": "A1", "status": "c"})), tid)
            t = wait_run(e, tid, 4, "tell")
            got = [r.json for r in rec.wait_for("POST", "/tell", count=3)]
            eq(got, [{"count": 1, "seen": "a", "tracking_no": "T1"},
                     {"count": 2, "seen": "ab", "tracking_no": "T1"},
                     {"count": 3, "seen": "abc", "tracking_no": "T1"}])
            eq(t["state"], "waiting")
            eq(t["data"]["count"], 3)


@test
def queued_latest_runs_build_on_each_other():
    with Recorder() as rec:
        rec.route("POST", "/slow", delay=0.3)
        src = cycle("q", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "update", match = "order_id", resume_with = "latest",
                 fields = { order_id = "string", n = "integer" } },
    hw.step { name = "add", run = function(tx)
      hw.http.post(%s .. "/slow", { json = {} })
      tx.data.sum = (tx.data.sum or 0) + tx.data.n
    end },
""" % lua_str(rec.url))
        with Engine({"q.lua": src}) as e:
            e.start()
            tid = park(e, "A1", "q", "new", "update")
            path = e.hook_path("q", "update")
            data = b""
            for n in (1, 2, 3, 4):
                body = json.dumps({"order_id": "A1", "n": n}).encode()
                data += ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: %d\r\n\r\n" % (path, len(body))).encode() + body
            with RawConn(e.port) as c:
                c.send(data)
                rs = c.read_responses(4, timeout=10)
            eq([r.status for r in rs], [202] * 4)
            t = wait_run(e, tid, 5, "add", timeout=15)
            eq(t["data"]["sum"], 10, "each queued run started from the one before it")


@test
def finish_ends_the_wait_then_404():
    src = cycle("fin", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "status", match = "order_id", fields = { order_id = "string", status = "string" } },
    hw.decision { name = "delivered?", test = function(tx) return tx.data.status == "Delivered" end,
                  on_false = "stop" },
    hw.finish { name = "done" },
    hw.step { name = "never", run = function(tx) tx.data.never = true end },
""")
    with Engine({"fin.lua": src}) as e:
        e.start()
        tid = park(e, "A1", "fin", "new", "status")
        other = park(e, "A1", "fin", "new", "status")
        url = e.hook_url("fin", "status")
        eq(accepted(e.post(url, json={"order_id": "A1", "status": "Packed"})), other)
        wait_run(e, other, 2, "delivered?")
        eq(e.tx(other)["state"], "waiting")
        eq(accepted(e.post(url, json={"order_id": "A1", "status": "Delivered"})), other)
        t = e.wait_tx(other, "completed")
        eq(t["step"], "done")
        ok("never" not in t["data"], "the run ends at hw.finish", t["data"])
        # the older one still waits and is matched now
        eq(accepted(e.post(url, json={"order_id": "A1", "status": "Delivered"})), tid)
        e.wait_tx(tid, "completed")
        r = e.post(url, json={"order_id": "A1", "status": "Delivered"})
        eq(r.status, 404)
        eq(r.json, {"error": "no waiting transaction with order_id = A1"})
        e.kill()
        e.start()
        eq(e.post(url, json={"order_id": "A1", "status": "x"}).status, 404, "still ended after kill -9")
        eq(e.tx(other)["state"], "completed")


@test
def finish_as_failed_and_sync_answer_names_the_state():
    src = cycle("finf", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "status", match = "order_id", fields = { order_id = "string" } },
    hw.finish { name = "give up", state = "failed" },
    hw.respond { name = "never", status = 200, body = { no = true } },
""")
    with Engine({"finf.lua": src}) as e:
        e.start()
        tid = park(e, "A1", "finf", "new", "status")
        r = e.post(e.hook_url("finf", "status"), json={"order_id": "A1"})
        eq(r.status, 200, r.body)
        eq(r.json, {"transaction": tid, "state": "failed"})
        e.wait_tx(tid, "failed")
        eq(e.post(e.hook_url("finf", "status"), json={"order_id": "A1"}).status, 404)


@test
def no_match_404_names_the_request_field_and_value():
    src = cycle("names", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "carrier", match = { request = "reference", transaction = "order_id" },
                 fields = { reference = "string" } },
""")
    with Engine({"names.lua": src}) as e:
        e.start()
        park(e, "A1", "names", "new", "carrier")
        r = e.post(e.hook_url("names", "carrier"), json={"reference": "SO-1"})
        eq(r.status, 404)
        eq(r.json, {"error": "no waiting transaction with reference = SO-1"})


# ------------------------------------------------------------------ sync fallback

def slow_sync_cycle(rec_url, name="slow"):
    return cycle(name, """
    hw.webhook { name = "ask", fields = { q = "string" } },
    hw.step { name = "think", run = function(tx)
      hw.http.get(%s .. "/slow")
      if tx.data.q == "boom" then error("kaboom 7") end
    end },
    hw.respond { name = "answer", status = 201, headers = { ["X-Order"] = "O-7" },
                 body = function(tx) return { id = tx.id, q = tx.data.q } end },
    hw.step { name = "after", run = function(tx) end },
""" % lua_str(rec_url), extra='\n  sync_timeout = 1, on_sync_timeout = "accept",')


def get_url(url, method="GET"):
    u = urllib.parse.urlsplit(url)
    return http_request(u.hostname, u.port, method, u.path)


@test
def sync_fallback_gives_202_with_status_url_then_the_answer():
    with Recorder() as rec:
        rec.route("GET", "/slow", delay=2.5)
        with Engine({"slow.lua": slow_sync_cycle(rec.url)}) as e:
            e.start()
            hook = e.hook_url("slow", "ask")
            t0 = time.time()
            r = e.post(hook, json={"q": "hi"})
            ok(time.time() - t0 < 2.4, "answered at sync_timeout, not at the end")
            eq(r.status, 202, r.body)
            eq(sorted(r.json), ["accepted", "status_url", "transaction"])
            tid = r.json["transaction"]
            url = r.json["status_url"]
            eq(r.headers.get("location"), url)
            ok(url.startswith(hook + "/status/"), "under the webhook's own URL", url)
            secret = url.rsplit("/", 1)[1]
            ok(len(secret) >= 22 + len(tid), "an unguessable part", url)
            s = get_url(url)
            eq(s.status, 202)
            eq(s.json, {"state": "running"})
            eq(get_url(url[:-3] + "xyz").status, 404, "a wrong secret finds nothing")
            other = url.replace("/status/%s-" % tid, "/status/%d-" % (int(tid) + 1))
            eq(get_url(other).status, 404)
            eq(get_url(url, "POST").status, 405)
            s = wait_until(lambda: (lambda x: x if x.status != 202 else None)(get_url(url)), timeout=10,
                           msg="the respond step's answer")
            eq(s.status, 201)
            eq(s.json, {"id": tid, "q": "hi"})
            eq(s.headers.get("x-order"), "O-7")
            ok(s.headers.get("content-type", "").startswith("application/json"), s.headers)
            t = e.wait_tx(tid, "completed")
            eq([h["status"] for h in t["history"] if h["step"] == "answer"], ["responded"])
            # the answer stays: again after a restart
            eq(e.restart(), 0)
            s = get_url(url)
            eq(s.status, 201)
            eq(s.json, {"id": tid, "q": "hi"})
            # a run that fails before respond: the status URL gives the 500 a caller would get
            r = e.post(hook, json={"q": "boom"})
            eq(r.status, 202)
            furl = r.json["status_url"]
            s = wait_until(lambda: (lambda x: x if x.status != 202 else None)(get_url(furl)), timeout=10,
                           msg="the failure")
            eq(s.status, 500)
            eq(s.json["transaction"], r.json["transaction"])
            contains(s.json["error"], "kaboom 7")


@test
def sync_fallback_across_kill9():
    with Recorder() as rec:
        rec.route("GET", "/slow", delay=2.0)
        with Engine({"slow.lua": slow_sync_cycle(rec.url)}) as e:
            e.start()
            r = e.post(e.hook_url("slow", "ask"), json={"q": "again"})
            eq(r.status, 202, r.body)
            url, tid = r.json["status_url"], r.json["transaction"]
            e.kill()   # inside the slow call, before respond
            e.start()
            eq(get_url(url).status, 202, "still running after the restart")
            s = wait_until(lambda: (lambda x: x if x.status != 202 else None)(get_url(url)), timeout=15,
                           msg="the answer after recovery")
            eq(s.status, 201)
            eq(s.json, {"id": tid, "q": "again"})


@test
def quick_sync_answers_are_unchanged_with_accept():
    with Recorder() as rec:
        with Engine({"slow.lua": slow_sync_cycle(rec.url)}) as e:
            e.start()
            r = e.post(e.hook_url("slow", "ask"), json={"q": "fast"})
            eq(r.status, 201, r.body)
            eq(r.json["q"], "fast")


# ------------------------------------------------------------------ issue 10 regressions

def two_hop(extra_a=""):
    return cycle("hop", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "a", match = "order_id", fields = { order_id = "string" }%s },
    hw.step { name = "s", run = function(tx) tx.data.hop = "b" end },
    hw.webhook { name = "b", match = "order_id", fields = { order_id = "string" } },
    hw.step { name = "t", run = function(tx) tx.data.hop = "done" end },
""" % extra_a)


@test
def older_candidate_found_while_the_newest_has_just_moved_on():
    """Issue 10: the newest match re-parks at a later webhook (write not committed
    yet); a request right behind it must resume the older one, not get 404."""
    with Engine({"hop.lua": two_hop()}) as e:
        e.start()
        for attempt in range(3):
            v = "V%d" % attempt
            older = park(e, v, "hop", "new", "a")
            time.sleep(0.02)
            newer = park(e, v, "hop", "new", "a")
            path = e.hook_path("hop", "a")
            body = json.dumps({"order_id": v}).encode()
            one = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n" % (path, len(body))).encode() + body
            with RawConn(e.port) as c:
                c.send(one + one)
                rs = c.read_responses(2, timeout=10)
            eq([r.status for r in rs], [202, 202], repr([r.body for r in rs]))
            eq([r.json["transaction"] for r in rs], [newer, older])
            e.wait_tx(newer, "waiting")
            wait_until(lambda: e.tx(newer)["step"] == "b" and e.tx(older)["step"] == "b", msg="both at b")


SLOWSYNC_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
/* fsync/fdatasync sleep for the milliseconds written in $SLOWSYNC_FILE: a slow disk. */
static void slow(void) {
  const char *f = getenv("SLOWSYNC_FILE");
  FILE *fp;
  int ms = 0;
  if (f == NULL || (fp = fopen(f, "r")) == NULL) return;
  if (fscanf(fp, "%d", &ms) != 1) ms = 0;
  fclose(fp);
  if (ms > 0) usleep((useconds_t) ms * 1000);
}
int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int)) dlsym(RTLD_NEXT, "fsync");
  slow();
  return real(fd);
}
int fdatasync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
  slow();
  return real(fd);
}
"""


def slowsync_lib(tmp):
    src = os.path.join(tmp, "slowsync.c")
    so = os.path.join(tmp, "slowsync.so")
    with open(src, "w") as f:
        f.write(SLOWSYNC_C)
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", so, src, "-ldl"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    eq(r.returncode, 0, r.stderr)
    return so


@test
def expiry_does_not_end_a_wait_that_moved_to_a_later_webhook():
    """Issue 10: a transaction resumed at A (which expires) re-parks at B while the
    store is slow; the expiry of A must not mark it expired at B."""
    tmp = tempfile.mkdtemp(prefix="hookwork-slowsync-")
    flag = os.path.join(tmp, "ms")
    env = {}
    if not on_postgres():  # on PostgreSQL the commits are slowed by StoreFault
        so = slowsync_lib(tmp)
        asan = os.environ.get("ASAN_OPTIONS", "")
        env = {"LD_PRELOAD": so, "SLOWSYNC_FILE": flag,
               "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}

    def slow_commits(ms):
        if on_postgres():
            fault.set("slow:%d" % ms if ms else "ok")
        else:
            with open(flag, "w") as f:
                f.write(str(ms))
    with Engine({"hop.lua": two_hop(", expires = 2")}, env=env) as e:
        fault = StoreFault(e) if on_postgres() else None  # SQLite: the fsync shim above
        e.start()
        tid = park(e, "A1", "hop", "new", "a")
        parked = time.time()
        time.sleep(max(0, parked + 1.2 - time.time()))
        slow_commits(900)        # every commit now takes ~0.9 s
        url = e.hook_url("hop", "a")
        t0 = time.time()
        r = e.post(url, json={"order_id": "A1"}, timeout=20)
        eq(accepted(r), tid, "resumed before the wait at 'a' expired")
        ok(time.time() - t0 >= 0.8, "the store is slow: the resume's commit took %.2f s" % (time.time() - t0))
        time.sleep(3.0)          # expiry ticks while the park at 'b' commits slowly
        slow_commits(0)
        time.sleep(1.0)
        t = e.tx(tid)
        eq((t["state"], t["step"]), ("waiting", "b"), "the wait moved to 'b' and is live")
        eq(accepted(e.post(e.hook_url("hop", "b"), json={"order_id": "A1"})), tid)
        t = wait_run(e, tid, 3, "t")
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


@test
def run_numbers_stay_unique_when_a_resume_comes_10s_after_a_running_one():
    """Issue 10: a resume more than 10 s after one still running got the same run number."""
    with Recorder() as rec:
        rec.route("POST", "/slow", delay=11.0)
        src = cycle("long", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "u", match = "order_id", fields = { order_id = "string", n = "integer" } },
    hw.step { name = "work", run = function(tx)
      if tx.data.n == 1 then hw.http.post(%s .. "/slow", { json = {} }) end
    end },
""" % lua_str(rec.url))
        with Engine({"long.lua": src}) as e:
            e.start()
            tid = park(e, "A1", "long", "new", "u")
            url = e.hook_url("long", "u")
            eq(accepted(e.post(url, json={"order_id": "A1", "n": 1})), tid)
            rec.wait_for("POST", "/slow")
            time.sleep(10.5)
            eq(accepted(e.post(url, json={"order_id": "A1", "n": 2})), tid)
            t = wait_run(e, tid, 3, "work", timeout=10)
            runs = [h[2] for h in hist(t) if h[0] == "work"]
            eq(sorted(runs), [2, 3], "one run 2 and one run 3 (history %r)" % hist(t))
            eq(t["runs"], 3)


@test
def run_numbers_stay_unique_across_kill9_with_a_queued_run():
    with Recorder() as rec:
        rec.route("POST", "/slow", delay=2.0)
        src = cycle("long2", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "u", match = "order_id", fields = { order_id = "string", n = "integer" } },
    hw.step { name = "work", run = function(tx) hw.http.post(%s .. "/slow", { json = { n = tx.data.n } }) end },
""" % lua_str(rec.url))
        with Engine({"long2.lua": src}) as e:
            e.start()
            tid = park(e, "A1", "long2", "new", "u")
            url = e.hook_url("long2", "u")
            eq(accepted(e.post(url, json={"order_id": "A1", "n": 1})), tid)
            rec.wait_for("POST", "/slow")
            e.kill()
            rec.route("POST", "/slow", delay=0.2)
            e.start()
            eq(accepted(e.post(url, json={"order_id": "A1", "n": 2})), tid)
            t = wait_run(e, tid, 3, "work", timeout=15)
            by_run = {}
            for h in hist(t):
                if h[0] == "work":
                    by_run.setdefault(h[2], []).append(h[1])
            eq(sorted(by_run), [2, 3], hist(t))
            eq(t["runs"], 3)


@test
def per_transaction_queue_and_kept_requests_are_bounded():
    with Recorder() as rec:
        rec.route("POST", "/slow", delay=2.0)
        src = cycle("bound", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "u", match = "order_id", early = 60, fields = { order_id = "string" } },
    hw.step { name = "work", run = function(tx) hw.http.post(%s .. "/slow", { json = {} }) end },
""" % lua_str(rec.url))
        with Engine({"bound.lua": src}, env={"HOOKWORK_MAX_BACKLOG": "3", "HOOKWORK_MAX_KEPT": "2"}) as e:
            e.start()
            url = e.hook_url("bound", "u")
            # kept requests: two per value, then 503; other values still kept
            buffered(e.post(url, json={"order_id": "K"}))
            buffered(e.post(url, json={"order_id": "K"}))
            r = e.post(url, json={"order_id": "K"})
            eq(r.status, 503, r.body)
            eq(r.headers.get("retry-after"), "1")
            contains(r.json["error"], "are kept already")
            buffered(e.post(url, json={"order_id": "L"}))
            # runs queued behind a slow one: three, then 503 until they end
            tid = park(e, "A1", "bound", "new", "u")
            codes = [e.post(url, json={"order_id": "A1"}).status for _ in range(4)]
            eq(codes, [202, 202, 202, 503])
            r = e.post(url, json={"order_id": "A1"})
            eq(r.status, 503)
            eq(r.json["error"], "transaction %s has 3 runs waiting; try again later" % tid)
            wait_run(e, tid, 4, "work", timeout=20)
            eq(accepted(e.post(url, json={"order_id": "A1"})), tid, "accepted again once they ended")


@test
def resumes_queued_behind_a_finish_do_not_revive_the_transaction():
    with Recorder() as rec:
        rec.route("POST", "/slow", delay=0.5)
        src = cycle("fin2", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "status", match = "order_id", fields = { order_id = "string", status = "string" } },
    hw.step { name = "slow", run = function(tx) hw.http.post(%s .. "/slow", { json = {} }) end },
    hw.decision { name = "delivered?", test = function(tx) return tx.data.status == "Delivered" end,
                  on_false = "later" },
    hw.finish { name = "done" },
    hw.webhook { name = "later", match = "order_id", fields = { order_id = "string" } },
""" % lua_str(rec.url))
        with Engine({"fin2.lua": src}) as e:
            e.start()
            tid = park(e, "A1", "fin2", "new", "status")
            path = e.hook_path("fin2", "status")
            data = b""
            for st in ("Delivered", "Packed"):
                body = json.dumps({"order_id": "A1", "status": st}).encode()
                data += ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: %d\r\n\r\n" % (path, len(body))).encode() + body
            with RawConn(e.port) as c:
                c.send(data)
                rs = c.read_responses(2, timeout=10)
            eq([r.status for r in rs], [202, 202], repr([r.body for r in rs]))
            t = e.wait_tx(tid, "completed")
            t = wait_until(lambda: (lambda x: x if any(h.get("run") == 3 for h in x["history"]) else None)(e.tx(tid)),
                           msg="run 3 recorded")
            time.sleep(1.0)
            t = e.tx(tid)
            eq((t["state"], t["step"]), ("completed", "done"), "the finish stands")
            r3 = [h for h in t["history"] if h["run"] == 3]
            eq([(h["step"], h["status"]) for h in r3], [("status", "stopped")])
            contains(r3[0].get("note") or "", "not run: the transaction ended at 'done'")
            eq(e.post(e.hook_url("fin2", "later"), json={"order_id": "A1"}).status, 404)
            eq(len(rec.find("POST", "/slow")), 1)
