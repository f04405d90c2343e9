"""Issue 4: synchronous webhooks (respond step), sync timeout, linking cycles. Black-box."""

import json
import time

from lib import (cycle, Engine, Recorder, RawConn, test, eq, ok, contains, wait_until, lua_str)


SIMPLE = cycle("simple", """
    hw.webhook { name = "in" },
    hw.step { name = "mark", run = function(tx) tx.data.seen = true end },
""")


def accepted(r):
    eq(r.status, 202, "status (body %r)" % r.body)
    eq(sorted(r.json or {}), ["accepted", "transaction"], "202 body %r" % r.body)
    return r.json["transaction"]


def hist(t):
    return [(h.get("step"), h.get("status"), h.get("run")) for h in t.get("history") or []]


def only_tx(e, cycle_name, state=None, timeout=10):
    """Wait until the cycle has exactly one transaction (in state, if given) and return it in full."""
    def get():
        lst = e.txs(cycle=cycle_name)
        if len(lst) == 1 and (state is None or lst[0]["state"] == state):
            return lst
        ok(len(lst) <= 1, "at most one transaction in %s" % cycle_name, lst)
        return None
    lst = wait_until(get, timeout=timeout, msg="one %s transaction in %s" % (state or "", cycle_name))
    return e.tx(lst[0]["id"])


# ------------------------------------------------------------------ respond step

@test
def respond_status_headers_table_body():
    src = cycle("sync", """
    hw.webhook { name = "in" },
    hw.step { name = "calc", run = function(tx) tx.data.double = tx.data.x * 2 end },
    hw.respond { name = "reply", status = 201, headers = { ["X-Custom"] = "yes" },
                 body = { ok = true, kind = "static" } },
""")
    with Engine({"sync.lua": src}) as e:
        e.start()
        r = e.post(e.hook_url("sync", "in"), json={"x": 21})
        eq(r.status, 201, "respond status (body %r)" % r.body)
        eq(r.headers.get("x-custom"), "yes", "respond header")
        ok(r.headers.get("content-type", "").startswith("application/json"), "table body is JSON", r.headers)
        eq(r.json, {"ok": True, "kind": "static"})
        t = only_tx(e, "sync", "completed")
        eq(t["data"]["double"], 42)
        eq(hist(t), [("in", "ok", 1), ("calc", "ok", 1), ("reply", "responded", 1)])


@test
def respond_function_body_default_status():
    src = cycle("fn", """
    hw.webhook { name = "in", fields = { x = "number" } },
    hw.step { name = "calc", run = function(tx) tx.data.double = tx.data.x * 2 end },
    hw.respond { name = "reply",
                 body = function(tx) return { id = tx.id, double = tx.data.double } end },
""")
    with Engine({"fn.lua": src}) as e:
        e.start()
        url = e.hook_url("fn", "in")
        r = e.post(url, json={"x": 4})
        eq(r.status, 200, "respond status defaults to 200 (body %r)" % r.body)
        j = r.json
        ok(isinstance(j, dict) and isinstance(j.get("id"), str), "body from function", r.body)
        eq(j["double"], 8)
        t = e.wait_tx(j["id"], "completed")
        eq(t["cycle"], "fn")
        r = e.post(url, json={"x": "four"})
        eq(r.status, 400, "fields still validated on synchronous webhooks")
        eq(r.json, {"error": "field 'x': expected number"})


@test
def respond_string_bodies():
    src_plain = cycle("plain", """
    hw.webhook { name = "in" },
    hw.respond { name = "reply", status = 200, body = "hello world" },
""")
    src_csv = cycle("csv", """
    hw.webhook { name = "in" },
    hw.respond { name = "reply", status = 202, headers = { ["Content-Type"] = "text/csv" },
                 body = "a,b\\n1,2\\n" },
""")
    src_fn = cycle("fnstr", """
    hw.webhook { name = "in" },
    hw.respond { name = "reply", body = function(tx) return "n=" .. tx.data.n end },
""")
    with Engine({"plain.lua": src_plain, "csv.lua": src_csv, "fnstr.lua": src_fn}) as e:
        e.start()
        r = e.post(e.hook_url("plain", "in"), json={})
        eq(r.status, 200)
        eq(r.body, b"hello world")
        ok(r.headers.get("content-type", "").startswith("text/plain"), "string body is text/plain", r.headers)
        r = e.post(e.hook_url("csv", "in"), json={})
        eq(r.status, 202)
        eq(r.body, b"a,b\n1,2\n")
        ok(r.headers.get("content-type", "").startswith("text/csv"), "headers override text/plain", r.headers)
        ok(r.json is None or "accepted" not in (r.json or {}), "respond's own 202, not the engine's")
        r = e.post(e.hook_url("fnstr", "in"), json={"n": "5"})
        eq(r.status, 200)
        eq(r.body, b"n=5")
        ok(r.headers.get("content-type", "").startswith("text/plain"), "string from a function is text/plain",
           r.headers)


@test
def steps_after_respond_still_run():
    with Recorder() as rec:
        rec.route("GET", "/delay", delay=1.0)
        src = cycle("after", """
    hw.webhook { name = "in" },
    hw.respond { name = "reply", status = 200, body = function(tx) return { id = tx.id } end },
    hw.step { name = "slow", run = function(tx) hw.http.get(%(u)s .. "/delay") end },
    hw.request { name = "notify", method = "POST", url = %(u)s .. "/after",
                 json = function(tx) return { id = tx.id, x = tx.data.x } end },
""" % {"u": lua_str(rec.url)})
        with Engine({"after.lua": src}) as e:
            e.start()
            t0 = time.time()
            r = e.post(e.hook_url("after", "in"), json={"x": "hello"})
            dt = time.time() - t0
            eq(r.status, 200, "body %r" % r.body)
            tid = r.json["id"]
            ok(dt < 0.9, "answer sent when respond runs, not after later steps (took %.2fs)" % dt)
            got = rec.wait_for("POST", "/after")
            eq(got[0].json, {"id": tid, "x": "hello"}, "request after respond")
            t = e.wait_tx(tid, "completed")
            eq(t["data"]["notify"]["status"], 200, "request response stored at tx.data[name]")
            eq([h[:2] for h in hist(t)],
               [("in", "ok"), ("reply", "responded"), ("slow", "ok"), ("notify", "ok")])


@test
def sync_timeout_504_cycle_goes_on():
    with Recorder() as rec:
        rec.route("GET", "/slow", delay=2.0, json={"slow": True})
        src = cycle("slowsync", """
    hw.webhook { name = "in" },
    hw.step { name = "slow", run = function(tx)
      local r = hw.http.get(%s .. "/slow")
      tx.data.slow = r.json.slow
    end },
    hw.respond { name = "reply", body = { late = true } },
    hw.step { name = "end", run = function(tx) tx.data.ended = true end },
""" % lua_str(rec.url), extra="\n  sync_timeout = 1,")
        with Engine({"slowsync.lua": src}) as e:
            e.start()
            t0 = time.time()
            r = e.post(e.hook_url("slowsync", "in"), json={})
            dt = time.time() - t0
            eq(r.status, 504, "body %r" % r.body)
            ok(0.8 <= dt < 1.9, "504 after sync_timeout = 1 (took %.2fs)" % dt)
            j = r.json
            ok(isinstance(j, dict), "504 body is JSON", r.body)
            eq(sorted(j), ["error", "transaction"])
            ok(isinstance(j["error"], str) and j["error"], "error message")
            ok(isinstance(j["transaction"], str) and j["transaction"], "transaction id")
            t = e.wait_tx(j["transaction"], {"completed", "failed"})
            eq(t["state"], "completed", "the cycle goes on after 504 (history %r)" % t.get("history"))
            eq(t["data"].get("slow"), True)
            eq(t["data"].get("ended"), True)


@test
def error_before_respond_500():
    src = cycle("boom", """
    hw.webhook { name = "in" },
    hw.step { name = "explode", run = function(tx) error("boom") end },
    hw.respond { name = "reply", body = { never = true } },
""")
    with Engine({"boom.lua": src}) as e:
        e.start()
        r = e.post(e.hook_url("boom", "in"), json={})
        eq(r.status, 500, "body %r" % r.body)
        j = r.json
        ok(isinstance(j, dict), "500 body is JSON", r.body)
        eq(sorted(j), ["error", "transaction"])
        contains(j["error"], "boom", "the error message")
        t = e.wait_tx(j["transaction"], {"failed", "completed"})
        eq(t["state"], "failed")
        eq(t["step"], "explode")


@test
def decision_stop_before_respond_200_state():
    src = cycle("gate", """
    hw.webhook { name = "in" },
    hw.decision { name = "pass?", test = function(tx) return tx.data.pass == true end,
                  on_false = "stop" },
    hw.respond { name = "reply", status = 201, body = { passed = true } },
""")
    with Engine({"gate.lua": src}) as e:
        e.start()
        url = e.hook_url("gate", "in")
        r = e.post(url, json={"pass": False})
        eq(r.status, 200, "body %r" % r.body)
        j = r.json
        ok(isinstance(j, dict) and isinstance(j.get("transaction"), str), "body", r.body)
        eq(j, {"transaction": j["transaction"], "state": "completed"})
        t = e.wait_tx(j["transaction"], "completed")
        eq(t["step"], "pass?")
        r = e.post(url, json={"pass": True})
        eq(r.status, 201)
        eq(r.json, {"passed": True})


@test
def client_disconnect_mid_wait():
    with Recorder() as rec:
        rec.route("GET", "/slow", sequence=[{"delay": 1.5, "json": {"n": 1}}, {"json": {"n": 2}}])
        src = cycle("disc", """
    hw.webhook { name = "in" },
    hw.step { name = "slow", run = function(tx) tx.data.n = hw.http.get(%s .. "/slow").json.n end },
    hw.respond { name = "reply", body = function(tx) return { n = tx.data.n } end },
    hw.step { name = "end", run = function(tx) tx.data.ended = true end },
""" % lua_str(rec.url))
        with Engine({"disc.lua": src, "simple.lua": SIMPLE}) as e:
            e.start()
            path = e.hook_path("disc", "in")
            body = b'{"who":"gone"}'
            with RawConn(e.port) as c:
                c.send(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n\r\n" % (path, len(body))).encode() + body)
                rec.wait_for("GET", "/slow")
                time.sleep(0.2)
            # the caller is gone; the engine keeps serving
            eq(e.admin("GET", "/healthz").status, 200)
            e.wait_tx(accepted(e.post(e.hook_url("simple", "in"), json={})), "completed")
            t = only_tx(e, "disc", "completed", timeout=10)
            eq(t["data"].get("who"), "gone")
            eq(t["data"].get("ended"), True)
            r = e.post(path, json={})
            eq(r.status, 200)
            eq(r.json, {"n": 2})
            ok(e.running(), "engine still running")


# ------------------------------------------------------------------ linking

def _chain_in_process():
    a = cycle("a", """
    hw.webhook { name = "in", fields = { x = "number" } },
    hw.step { name = "sa", run = function(tx) tx.data.a = true end },
    hw.link { name = "to b", cycle = "b", hook = "in" },
""")
    b = cycle("b", """
    hw.webhook { name = "in", fields = { x = "number", a = "boolean" } },
    hw.step { name = "sb", run = function(tx) tx.data.b = true end },
    hw.link { name = "to c", cycle = "c", hook = "in" },
""")
    c = cycle("c", """
    hw.webhook { name = "in", fields = { x = "number", a = "boolean", b = "boolean" } },
    hw.step { name = "sc", run = function(tx) tx.data.c = true end },
""")
    return {"a.lua": a, "b.lua": b, "c.lua": c}


def _check_linked_from(t, cycle_name, tid):
    lf = t.get("linked_from")
    if lf is None:
        return
    ok(isinstance(lf, dict), "linked_from is an object", lf)
    eq(lf.get("cycle"), cycle_name, "linked_from.cycle")
    eq(lf.get("id", lf.get("transaction")), tid, "linked_from transaction id")


@test
def link_chain_of_three_in_process():
    with Engine(_chain_in_process()) as e:
        e.start()
        aid = accepted(e.post(e.hook_url("a", "in"), json={"x": 7}))
        ta = e.wait_tx(aid, {"completed", "failed"})
        eq(ta["state"], "completed", "history %r" % ta.get("history"))
        eq([h[:2] for h in hist(ta)], [("in", "ok"), ("sa", "ok"), ("to b", "ok")])
        tb = only_tx(e, "b", "completed")
        eq(tb["data"], {"x": 7, "a": True, "b": True})
        _check_linked_from(tb, "a", aid)
        tc = only_tx(e, "c", "completed")
        eq(tc["data"], {"x": 7, "a": True, "b": True, "c": True})
        _check_linked_from(tc, "b", tb["id"])


@test
def link_body_function_and_target_validation():
    src_ok = cycle("src_ok", """
    hw.webhook { name = "in" },
    hw.link { name = "fwd", cycle = "dst", hook = "in",
              body = function(tx) return { y = tx.data.x + 1 } end },
""")
    src_bad = cycle("src_bad", """
    hw.webhook { name = "in" },
    hw.link { name = "fwd", cycle = "dst", hook = "in",
              body = function(tx) return { y = "not a number" } end },
""")
    dst = cycle("dst", """
    hw.webhook { name = "in", fields = { y = "number" } },
    hw.step { name = "s", run = function(tx) tx.data.got = true end },
""")
    with Engine({"src_ok.lua": src_ok, "src_bad.lua": src_bad, "dst.lua": dst}) as e:
        e.start()
        t = e.wait_tx(accepted(e.post(e.hook_url("src_ok", "in"), json={"x": 1})), {"completed", "failed"})
        eq(t["state"], "completed", "history %r" % t.get("history"))
        td = only_tx(e, "dst", "completed")
        eq(td["data"], {"y": 2, "got": True}, "body(tx) is what the target receives")
        t = e.wait_tx(accepted(e.post(e.hook_url("src_bad", "in"), json={"x": 1})), {"completed", "failed"})
        eq(t["state"], "failed", "a link the target rejects fails the step")
        eq(t["step"], "fwd")
        err = [h.get("error") for h in t["history"] if h.get("step") == "fwd"]
        ok(err and err[0], "link step error recorded", t["history"])
        contains(err[0], "field 'y'", "target's field validation error")
        eq(len(e.txs(cycle="dst")), 1, "a rejected link stores nothing in the target")


@test
def link_chain_of_three_over_http():
    h1 = cycle("h1", """
    hw.webhook { name = "in", fields = { x = "number" } },
    hw.step { name = "fwd", run = function(tx)
      tx.data.next_url = hw.url("h2", "in")
      local r = hw.http.post(hw.url("h2", "in"), { json = { x = tx.data.x, a = true } })
      tx.data.status = r.status
      tx.data.next_tx = r.json and r.json.transaction
    end },
""")
    h2 = cycle("h2", """
    hw.webhook { name = "in", fields = { x = "number", a = "boolean" } },
    hw.step { name = "fwd", run = function(tx)
      local r = hw.http.post(hw.url("h3", "in"), { json = { x = tx.data.x, a = tx.data.a, b = true } })
      tx.data.status = r.status
      tx.data.next_tx = r.json and r.json.transaction
    end },
""")
    h3 = cycle("h3", """
    hw.webhook { name = "in", fields = { x = "number", a = "boolean", b = "boolean" } },
    hw.step { name = "s", run = function(tx) tx.data.c = true end },
""")
    with Engine({"h1.lua": h1, "h2.lua": h2, "h3.lua": h3}) as e:
        e.start()
        t1 = e.wait_tx(accepted(e.post(e.hook_url("h1", "in"), json={"x": 3})), {"completed", "failed"})
        eq(t1["state"], "completed", "history %r" % t1.get("history"))
        eq(t1["data"]["next_url"], e.hook_url("h2", "in"), "hw.url gives the full public URL")
        eq(t1["data"]["status"], 202)
        t2 = e.wait_tx(t1["data"]["next_tx"], {"completed", "failed"})
        eq(t2["cycle"], "h2")
        eq(t2["state"], "completed", "history %r" % t2.get("history"))
        eq(t2["data"]["status"], 202)
        t3 = e.wait_tx(t2["data"]["next_tx"], {"completed", "failed"})
        eq(t3["cycle"], "h3")
        eq(t3["state"], "completed")
        eq(t3["data"], {"x": 3, "a": True, "b": True, "c": True})


@test
def link_to_stopped_cycle_fails_step():
    a = cycle("a", """
    hw.webhook { name = "in" },
    hw.link { name = "to b", cycle = "b", hook = "in" },
    hw.step { name = "after", run = function(tx) tx.data.after = true end },
""")
    b = cycle("b", """
    hw.webhook { name = "in" },
""", extra="\n  autostart = false,")
    with Engine({"a.lua": a, "b.lua": b}) as e:
        e.start()
        eq(e.cycle("b")["state"], "stopped")
        t = e.wait_tx(accepted(e.post(e.hook_url("a", "in"), json={"x": 1})), {"completed", "failed"})
        eq(t["state"], "failed")
        eq(t["step"], "to b")
        ok("after" not in t["data"])
        err = [h.get("error") for h in t["history"] if h.get("step") == "to b"]
        ok(err and err[0], "error recorded", t["history"])
        contains(err[0], "cycle 'b' is stopped")
        eq(e.txs(cycle="b"), [], "nothing stored in the stopped cycle")
        e.start_cycle("b")
        t = e.wait_tx(accepted(e.post(e.hook_url("a", "in"), json={"x": 2})), {"completed", "failed"})
        eq(t["state"], "completed")
        only_tx(e, "b", "completed")
