"""Issue 3: outbound HTTP from cycles (hw.http.* and the hw.request step).

Black-box: the engine calls a local recording server (Recorder); what arrives
there and what the transaction stores are checked against SPEC.
"""

import json
import re
import threading
import time

from lib import (test, Engine, Recorder, eq, ok, contains, fail, wait_until,
                 free_port, lua_str)

TERMINAL = ("completed", "failed", "expired")


# ---------------------------------------------------------------- helpers

def cycle_lua(name, steps, connector=None, trigger='hw.webhook { name = "in" },'):
    return """local hw = require "hookwork"
return hw.cycle {
  name = %s,%s
  steps = {
    %s
%s
  },
}
""" % (lua_str(name), ("\n  connector = %s," % lua_str(connector)) if connector else "",
       trigger, steps)


def connector_lua(name, base_url=None, headers=None):
    parts = ["name = %s" % lua_str(name)]
    if base_url is not None:
        parts.append("base_url = %s" % lua_str(base_url))
    if headers:
        parts.append("headers = { %s }" % ", ".join(
            "[%s] = %s" % (lua_str(k), lua_str(v)) for k, v in headers.items()))
    return 'local hw = require "hookwork"\nreturn hw.connector { %s }\n' % ", ".join(parts)


def fire(e, cycle, body=None, step="in"):
    """POST to a fire-and-forget trigger; returns the transaction id."""
    r = e.post(e.hook_url(cycle, step), json=body if body is not None else {})
    eq(r.status, 202, "trigger of %s answered %r" % (cycle, r))
    j = r.json or {}
    eq(j.get("accepted"), True, "202 body %r" % (j,))
    tid = j.get("transaction")
    ok(isinstance(tid, str) and tid, "202 body names the transaction", j)
    return tid


def finish(e, tid, timeout=10):
    return e.wait_tx(tid, TERMINAL, timeout=timeout)


def expect_state(t, state):
    eq(t.get("state"), state, "transaction state (tx: %s)" % json.dumps(t)[:1500])


def history_of(t, step):
    return [h for h in (t.get("history") or []) if h.get("step") == step]


def failed_error(t, step):
    """The error recorded for the failed run of `step` (history entry)."""
    hs = [h for h in history_of(t, step) if h.get("status") == "failed"]
    ok(hs, "history has a failed entry for step %r" % step, t.get("history"))
    err = hs[-1].get("error")
    ok(isinstance(err, str) and err.strip(), "failed history entry carries an error message", hs[-1])
    return err


def check_lower_headers(hdrs, msg):
    ok(isinstance(hdrs, dict), msg + ": headers is an object", hdrs)
    for k in hdrs:
        eq(k, k.lower(), msg + ": response header names are lower-case")


QUERY = {"q": "a b&c=d/\u00e9?", "n": "1"}
QUERY_LUA = '{ q = %s, n = "1" }' % lua_str(QUERY["q"])
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
WITH_BODY = ("POST", "PUT", "PATCH")
STATUS = {"GET": 200, "POST": 201, "PUT": 200, "PATCH": 202, "DELETE": 200}


def route_methods(rec, prefix):
    for m in METHODS:
        rec.route(m, "%s/%s" % (prefix, m.lower()), status=STATUS[m],
                  json={"method": m, "n": 7, "token": "tok-" + m.lower()},
                  headers={"X-Reply": "R-" + m})


def check_received(rec, prefix, header_name, header_prefix):
    for m in METHODS:
        path = "%s/%s" % (prefix, m.lower())
        got = rec.find(m, path)
        eq(len(got), 1, "%s %s requests at the recorder" % (m, path))
        r = got[0]
        eq(r.query, QUERY, "%s query (URL-encoded, decoded by the server)" % m)
        ok(" " not in r.raw_path, "%s: the query is URL-encoded on the wire" % m, r.raw_path)
        eq(r.headers.get(header_name), header_prefix + m.lower(), "%s header %s" % (m, header_name))
        if m in WITH_BODY:
            ct = r.headers.get("content-type", "")
            ok(ct.startswith("application/json"), "%s json body sent with Content-Type application/json" % m, ct)
            eq(r.json, {"method": m, "list": [1, 2, 3], "nested": {"yes": True, "s": "x\"y"}},
               "%s JSON body" % m)
        else:
            eq(r.body, b"", "%s sends no body" % m)


def check_saved(resp, m, msg):
    ok(isinstance(resp, dict), "%s: response saved as an object" % msg, resp)
    eq(resp.get("status"), STATUS[m], "%s: status" % msg)
    check_lower_headers(resp.get("headers"), msg)
    eq(resp["headers"].get("x-reply"), "R-" + m, "%s: response header x-reply" % msg)
    eq(resp.get("json"), {"method": m, "n": 7, "token": "tok-" + m.lower()}, "%s: json" % msg)
    body = resp.get("body")
    ok(isinstance(body, str), "%s: body is a string" % msg, body)
    eq(json.loads(body), resp["json"], "%s: body is the raw JSON text" % msg)


# ---------------------------------------------------------------- tests

@test
def http_methods_from_step_function():
    """hw.http.get/post/put/patch/delete and hw.http.request inside hw.step."""
    with Recorder() as rec, Engine() as e:
        route_methods(rec, "/m")
        base = lua_str(rec.url)
        body = '{ method = "%s", list = { 1, 2, 3 }, nested = { yes = true, s = "x\\"y" } }'
        calls = []
        for m in METHODS:
            opts = "query = %s, headers = { [\"X-Test\"] = \"h-%s\" }" % (QUERY_LUA, m.lower())
            if m in WITH_BODY:
                opts += ", json = " + body % m
            if m == "PATCH":   # the generic form
                calls.append('out.%s = hw.http.request { method = "PATCH", url = B .. "/m/patch", %s }'
                             % (m.lower(), opts))
            else:
                calls.append('out.%s = hw.http.%s(B .. "/m/%s", { %s })' % (m.lower(), m.lower(), m.lower(), opts))
        steps = """    hw.step { name = "call", run = function(tx)
      local B = %s
      local out = {}
      %s
      tx.data.out = out
      tx.data.next_token = out.get.json.token
    end },
    hw.step { name = "use", run = function(tx)
      local r = hw.http.post(%s .. "/use", { json = { prev = tx.data.next_token, st = tx.data.out.post.status } })
      tx.data.used = r.status
    end },""" % (base, "\n      ".join(calls), base)
        e.write("meth.lua", cycle_lua("meth", steps))
        e.start()
        t = finish(e, fire(e, "meth"))
        expect_state(t, "completed")
        check_received(rec, "/m", "x-test", "h-")
        out = t["data"].get("out") or {}
        for m in METHODS:
            check_saved(out.get(m.lower()), m, "hw.http %s" % m)
        use = rec.find("POST", "/use")
        eq(len(use), 1, "the later call was made")
        eq(use[0].json, {"prev": "tok-get", "st": 201}, "a later call uses the earlier response")
        eq(t["data"].get("used"), 200)


@test
def request_step_each_method_saved_and_reused():
    """hw.request steps: method/path/query/headers/json on the wire; response at
    tx.data[save_as or name]; values as functions of tx; next step uses it."""
    with Recorder() as rec, Engine() as e:
        route_methods(rec, "/r")
        base = rec.url
        body = '{ method = "%s", list = { 1, 2, 3 }, nested = { yes = true, s = "x\\"y" } }'
        steps = []
        for m in METHODS:
            name = "%s one" % m.lower()
            save = ', save_as = "saved_%s"' % m.lower() if m in ("POST", "DELETE") else ""
            if m == "PUT":   # values as functions of tx (method: see request_step_method_as_function)
                s = ('    hw.request { name = %s, method = "PUT",\n'
                     '      url = function(tx) return %s .. "/r/" .. tx.data.which end,\n'
                     '      query = function(tx) return %s end,\n'
                     '      headers = function(tx) return { ["X-Test"] = "h-" .. tx.data.which } end,\n'
                     '      json = function(tx) return %s end },'
                     % (lua_str(name), lua_str(base), QUERY_LUA, body % m))
            else:
                s = ('    hw.request { name = %s, method = "%s", url = %s, query = %s,\n'
                     '      headers = { ["X-Test"] = "h-%s" }%s%s },'
                     % (lua_str(name), m, lua_str(base + "/r/" + m.lower()), QUERY_LUA, m.lower(),
                        (", json = " + body % m) if m in WITH_BODY else "", save))
            steps.append(s)
        steps.append('    hw.step { name = "copy", run = function(tx) tx.data.copied = tx.data["get one"].json.token end },')
        steps.append('    hw.request { name = "use", method = "POST", url = %s,\n'
                     '      json = function(tx) return { prev = tx.data["get one"].json.token,\n'
                     '                                   st = tx.data.saved_post.status,\n'
                     '                                   del = tx.data.saved_delete.headers["x-reply"] } end },'
                     % lua_str(base + "/use"))
        e.write("req.lua", cycle_lua("req", "\n".join(steps)))
        e.start()
        t = finish(e, fire(e, "req", {"which": "put"}))
        expect_state(t, "completed")
        check_received(rec, "/r", "x-test", "h-")
        d = t["data"]
        for m in METHODS:
            key = ("saved_%s" % m.lower()) if m in ("POST", "DELETE") else ("%s one" % m.lower())
            check_saved(d.get(key), m, "hw.request %s at tx.data[%r]" % (m, key))
        ok("post one" not in d, "with save_as the response is not also stored under the step name", sorted(d))
        eq(d.get("copied"), "tok-get", "a step function reads the saved response")
        use = rec.find("POST", "/use")
        eq(len(use), 1, "the last request step ran")
        eq(use[0].json, {"prev": "tok-get", "st": 201, "del": "R-DELETE"})
        eq((d.get("use") or {}).get("status"), 200, "the last response saved under its step name")


@test
def request_step_method_as_function():
    """SPEC: hw.request values may be functions of tx -- the method too."""
    with Recorder() as rec, Engine() as e:
        e.write("mfn.lua", cycle_lua("mfn", """    hw.request { name = "call", url = %s,
      method = function(tx) return tx.data.verb end },""" % lua_str(rec.url + "/verb")))
        e.start()
        t = finish(e, fire(e, "mfn", {"verb": "PATCH"}))
        expect_state(t, "completed")
        eq(len(rec.find("PATCH", "/verb")), 1, "method computed per transaction (seen %s)"
           % [(x.method, x.path) for x in rec.requests])
        eq((t["data"].get("call") or {}).get("status"), 200)


@test
def relative_url_base_url_and_connector_headers():
    with Recorder() as rec, Recorder() as other, Engine() as e:
        e.write("api.lua", connector_lua("api", base_url=rec.url + "/api",
                                         headers={"X-Api-Key": "k1", "X-Shared": "conn"}))
        steps = """    hw.step { name = "calls", run = function(tx)
      hw.http.get("/items")
      hw.http.get(%s)
      hw.http.get(%s)
      hw.http.get("/over", { headers = { ["x-api-key"] = "mine" } })
      hw.http.post(%s, { headers = { ["X-API-KEY"] = "abs-own" }, json = { a = 1 } })
    end },
    hw.request { name = "rel", method = "PUT", url = "/req/items", json = { b = 2 } },
    hw.request { name = "rel2", method = "GET", url = "/req/over", headers = { ["X-SHARED"] = "step" } },""" % (
            lua_str(rec.url + "/abs/same"), lua_str(other.url + "/abs/other"),
            lua_str(rec.url + "/abs/own"))
        e.write("rel.lua", cycle_lua("rel", steps, connector="api"))
        e.start()
        t = finish(e, fire(e, "rel"))
        expect_state(t, "completed")

        def one(r, m, p):
            got = r.find(m, p)
            eq(len(got), 1, "%s %s at the recorder (seen: %s)" % (m, p, [(x.method, x.path) for x in r.requests]))
            return got[0].headers

        h = one(rec, "GET", "/api/items")
        eq(h.get("x-api-key"), "k1", "connector header with a relative URL")
        eq(h.get("x-shared"), "conn")
        h = one(rec, "GET", "/abs/same")
        eq(h.get("x-api-key"), "k1", "connector header with an absolute URL on the base_url origin")
        h = one(other, "GET", "/abs/other")
        ok("x-api-key" not in h and "x-shared" not in h,
           "connector headers must not go to another origin", h)
        h = one(rec, "GET", "/api/over")
        eq(h.get("x-api-key"), "mine", "a call's own header overrides the connector's (case-insensitive)")
        eq(h.get("x-shared"), "conn", "the other connector headers still go")
        h = one(rec, "POST", "/abs/own")
        eq(h.get("x-api-key"), "abs-own", "own header overrides on an absolute same-origin URL")
        h = one(rec, "PUT", "/api/req/items")
        eq(h.get("x-api-key"), "k1", "request step with relative URL gets connector headers")
        eq(rec.find("PUT", "/api/req/items")[0].json, {"b": 2})
        h = one(rec, "GET", "/api/req/over")
        eq(h.get("x-shared"), "step", "request step header overrides the connector's")
        eq(h.get("x-api-key"), "k1")


@test
def auth_option_bearer_and_basic():
    """Issue 3: auth = {bearer=...} | {user=..., password=...}."""
    with Recorder() as rec, Engine() as e:
        steps = """    hw.step { name = "calls", run = function(tx)
      hw.http.get(%s, { auth = { bearer = "tok123" } })
    end },
    hw.request { name = "basic", method = "GET", url = %s, auth = { user = "ada", password = "s3cret" } },""" % (
            lua_str(rec.url + "/bearer"), lua_str(rec.url + "/basic"))
        e.write("auth.lua", cycle_lua("auth", steps))
        e.start()
        t = finish(e, fire(e, "auth"))
        expect_state(t, "completed")
        b = rec.find("GET", "/bearer")
        eq(len(b), 1)
        eq(b[0].headers.get("authorization"), "Bearer tok123")
        b = rec.find("GET", "/basic")
        eq(len(b), 1)
        eq(b[0].headers.get("authorization"), "Basic YWRhOnMzY3JldA==")


@test
def refused_connection_fails_naming_url():
    port = free_port()   # nothing listens there
    url = "http://127.0.0.1:%d/refused/path" % port
    with Engine() as e:
        e.write("ref.lua", cycle_lua("ref", """    hw.request { name = "call", method = "POST", url = %s, json = { a = 1 } },
    hw.respond { name = "reply", body = { ok = true } },""" % lua_str(url)))
        e.write("refp.lua", cycle_lua("refp", """    hw.step { name = "try", run = function(tx)
      local okk, err = pcall(hw.http.get, %s)
      tx.data.ok = okk
      tx.data.err = tostring(err)
    end },""" % lua_str(url)))
        e.start()
        t0 = time.time()
        r = e.post(e.hook_url("ref", "in"), json={})
        eq(r.status, 500, "sync caller gets 500 when the cycle fails before respond (%r)" % r)
        j = r.json or {}
        contains(j.get("error"), url, "500 body error names the URL")
        tid = j.get("transaction")
        ok(tid, "500 body names the transaction", j)
        t = e.wait_tx(tid, TERMINAL)
        expect_state(t, "failed")
        eq(t.get("step"), "call", "the failing step")
        contains(failed_error(t, "call"), url, "history error names the URL")
        ok(time.time() - t0 < 5, "a refused connection fails fast")
        # the Lua error is catchable
        t = finish(e, fire(e, "refp"))
        expect_state(t, "completed")
        eq(t["data"].get("ok"), False, "pcall(hw.http.get) returns false on a refused connection")
        contains(t["data"].get("err"), url, "the raised message names the URL")


@test
def timeout_is_honoured():
    with Recorder() as rec, Engine() as e:
        rec.route("GET", "/slow", json={"late": True}, delay=2.0)
        url = rec.url + "/slow"
        e.write("tmo.lua", cycle_lua("tmo", """    hw.request { name = "call", method = "GET", url = %s, timeout = 0.3 },
    hw.respond { name = "reply", body = { ok = true } },""" % lua_str(url)))
        e.start()
        hook = e.hook_url("tmo", "in")
        t0 = time.time()
        r = e.post(hook, json={})
        dt = time.time() - t0
        eq(r.status, 500, "timed-out call fails the cycle before respond (%r)" % r)
        ok(dt < 1.5, "timeout 0.3 s honoured (answer after %.2fs, the server waits 2 s)" % dt)
        j = r.json or {}
        contains(j.get("error"), url, "error names the URL")
        t = e.wait_tx(j.get("transaction"), TERMINAL)
        expect_state(t, "failed")
        eq(t.get("step"), "call")
        contains(failed_error(t, "call"), url, "history error names the URL")


@test
def retry_after_503_then_success():
    with Recorder() as rec, Engine() as e:
        rec.route("GET", "/flaky", sequence=[
            dict(status=503, json={"busy": True}, headers={"Retry-After": "0"}),
            dict(status=200, json={"ok": True, "n": 2}),
        ])
        e.write("rty.lua", cycle_lua("rty", """    hw.request { name = "call", method = "GET", url = %s, retries = 2 },"""
                                     % lua_str(rec.url + "/flaky")))
        e.start()
        t = finish(e, fire(e, "rty"), timeout=20)
        expect_state(t, "completed")
        eq(len(rec.find("GET", "/flaky")), 2, "one failed attempt then one successful attempt")
        hs = history_of(t, "call")
        ok(len(hs) >= 2 or "503" in json.dumps(hs),
           "the failed attempt is visible in the transaction history (issue 3)", hs)
        call = t["data"].get("call") or {}
        eq(call.get("status"), 200, "the successful attempt's response is saved")
        eq(call.get("json"), {"ok": True, "n": 2})


@test
def retries_exhausted_and_default_no_retry():
    with Recorder() as rec, Engine() as e:
        rec.route("GET", "/down", status=503, json={"busy": True}, headers={"Retry-After": "0"})
        rec.route("GET", "/down-once", status=503, json={"busy": True})
        e.write("exh.lua", cycle_lua("exh", """    hw.request { name = "call", method = "GET", url = %s, retries = 2 },
    hw.request { name = "plain", method = "GET", url = %s },""" % (
            lua_str(rec.url + "/down"), lua_str(rec.url + "/down-once"))))
        e.start()
        t = finish(e, fire(e, "exh"), timeout=25)
        expect_state(t, "completed")
        eq(len(rec.find("GET", "/down")), 3, "retries = 2: three attempts in all")
        eq((t["data"].get("call") or {}).get("status"), 503, "the last answer is returned, not raised")
        eq(len(rec.find("GET", "/down-once")), 1, "retries default to 0")
        eq((t["data"].get("plain") or {}).get("status"), 503)


@test
def non_2xx_is_returned_not_raised():
    with Recorder() as rec, Engine() as e:
        rec.route("GET", "/missing", status=404, json={"error": "nope"})
        rec.route("POST", "/bad", status=422, body=b"plain words", headers={"Content-Type": "text/plain"})
        e.write("nf.lua", cycle_lua("nf", """    hw.request { name = "call", method = "GET", url = %s },
    hw.step { name = "fn", run = function(tx)
      local r = hw.http.post(%s, { json = { x = 1 } })
      tx.data.fn_status = r.status
      tx.data.fn_body = r.body
      tx.data.seen = tx.data.call.status
    end },""" % (lua_str(rec.url + "/missing"), lua_str(rec.url + "/bad"))))
        e.start()
        t = finish(e, fire(e, "nf"))
        expect_state(t, "completed")
        call = t["data"].get("call") or {}
        eq(call.get("status"), 404, "404 stored")
        eq(call.get("json"), {"error": "nope"})
        eq(t["data"].get("fn_status"), 422, "hw.http.post returns the 422")
        eq(t["data"].get("fn_body"), "plain words")
        eq(t["data"].get("seen"), 404, "the next step sees the stored 404")
        eq(len(rec.find("GET", "/missing")), 1, "a 404 is not retried")


@test
def two_hundred_slow_calls_run_concurrently():
    n = 200
    with Recorder() as rec, Engine() as e:
        rec.route("POST", "/slow", json={"ok": True}, delay=0.3)
        e.write("fan.lua", cycle_lua("fan", """    hw.request { name = "slow", method = "POST", url = %s,
      json = function(tx) return { i = tx.data.i } end },""" % lua_str(rec.url + "/slow")))
        e.start()
        hook = e.hook_url("fan", "in")
        ids = [None] * n
        errors = []

        def worker(k, nthreads):
            for i in range(k, n, nthreads):
                try:
                    r = e.post(hook, json={"i": i})
                    if r.status != 202:
                        errors.append("post %d -> %r" % (i, r))
                    else:
                        ids[i] = (r.json or {}).get("transaction")
                except Exception as ex:  # noqa: BLE001
                    errors.append("post %d: %r" % (i, ex))

        nthreads = 40
        t0 = time.time()
        threads = [threading.Thread(target=worker, args=(k, nthreads)) for k in range(nthreads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        t_posted = time.time() - t0
        ok(not errors, "every trigger accepted", errors[:5])

        def all_done():
            lst = e.txs(cycle="fan", limit=1000)
            done = [x for x in lst if x.get("state") in TERMINAL]
            return len(done) >= n and lst
        lst = wait_until(all_done, timeout=15, interval=0.05, msg="200 transactions to end")
        dt = time.time() - t0
        states = {}
        for x in lst:
            states[x.get("state")] = states.get(x.get("state"), 0) + 1
        eq(states, {"completed": n}, "every transaction completed")
        eq(sorted(x["id"] for x in lst), sorted(ids), "the transactions are the ones started")
        eq(sorted(r.json["i"] for r in rec.find("POST", "/slow")), list(range(n)), "each call reached the server once")
        ok(dt <= 3.0, "200 x 300 ms outbound calls finished in %.2fs (posting took %.2fs); "
                      "serially this would take 60 s" % (dt, t_posted))


@test
def large_response_over_limit_fails_cleanly():
    with Recorder() as rec, Engine() as e:
        rec.route("GET", "/big", body=b"x" * (11 * 1024 * 1024), headers={"Content-Type": "text/plain"})
        rec.route("GET", "/five", body=b"y" * (5 * 1024 * 1024), headers={"Content-Type": "text/plain"})
        rec.route("GET", "/small", json={"fine": True})
        e.write("big.lua", cycle_lua("big", """    hw.request { name = "call", method = "GET", url = %s },
    hw.respond { name = "reply", body = { ok = true } },""" % lua_str(rec.url + "/big")))
        e.write("five.lua", cycle_lua("five", """    hw.step { name = "get", run = function(tx)
      local r = hw.http.get(%s)
      tx.data.len = #r.body
      tx.data.status = r.status
    end },""" % lua_str(rec.url + "/five")))
        e.write("small.lua", cycle_lua("small", """    hw.request { name = "call", method = "GET", url = %s },""" % lua_str(rec.url + "/small")))
        e.start()
        r = e.post(e.hook_url("big", "in"), json={}, timeout=20)
        eq(r.status, 500, "a response over 10 MiB fails the cycle before respond (%r)" % r)
        j = r.json or {}
        t = e.wait_tx(j.get("transaction"), TERMINAL)
        expect_state(t, "failed")
        eq(t.get("step"), "call")
        contains(failed_error(t, "call"), "/big", "the error names the call")
        ok(e.running(), "the engine survives a too-large response")
        eq(e.admin("GET", "/healthz").status, 200)
        t = finish(e, fire(e, "five"), timeout=20)
        expect_state(t, "completed")
        eq(t["data"].get("len"), 5 * 1024 * 1024, "a 5 MiB answer (under the limit) is read whole")
        t = finish(e, fire(e, "small"))
        expect_state(t, "completed")
        eq((t["data"].get("call") or {}).get("json"), {"fine": True}, "outbound calls still work afterwards")


@test
def metrics_count_outbound_requests():
    with Recorder() as rec, Engine() as e:
        rec.route("POST", "/nf", status=404, json={})
        e.write("met.lua", cycle_lua("met", """    hw.request { name = "a", method = "GET", url = %s },
    hw.request { name = "b", method = "POST", url = %s },""" % (
            lua_str(rec.url + "/ok"), lua_str(rec.url + "/nf"))))
        e.start()
        t = finish(e, fire(e, "met"))
        expect_state(t, "completed")
        text = e.metrics()
        lines = [ln for ln in text.splitlines()
                 if ln.startswith("hookwork_outbound_requests_total{") and 'cycle="met"' in ln]
        ok(lines, "hookwork_outbound_requests_total has series for cycle met", text[:3000])

        def total(method):
            s = 0.0
            for ln in lines:
                if 'method="%s"' % method in ln:
                    ok('status="' in ln, "the series has a status label", ln)
                    m = re.search(r"\}\s+([0-9.eE+-]+)", ln)
                    ok(m, "metric line has a value", ln)
                    s += float(m.group(1))
            return s
        ok(total("GET") >= 1, "GET counted", lines)
        ok(total("POST") >= 1, "POST counted", lines)
        ok(any('method="GET"' in ln and 'status="2xx"' in ln for ln in lines), "GET is 2xx", lines)
        ok(any('method="POST"' in ln and 'status="4xx"' in ln for ln in lines), "POST is 4xx", lines)


@test
def metrics_outbound_latency_histogram_is_cumulative():
    """Each call counts in every bucket at or above its duration: one call
    of ~0.3 s and one fast call give le=0.25 -> 1, le=0.5 -> 2, +Inf -> 2."""
    with Recorder() as rec, Engine() as e:
        rec.route("GET", "/slow", status=200, json={}, delay=0.3)
        e.write("lat.lua", cycle_lua("lat", """    hw.request { name = "a", method = "GET", url = %s },
    hw.request { name = "b", method = "GET", url = %s },""" % (
            lua_str(rec.url + "/slow"), lua_str(rec.url + "/ok"))))
        e.start()
        t = finish(e, fire(e, "lat"))
        expect_state(t, "completed")
        text = e.metrics()
        b = {}
        for ln in text.splitlines():
            m = re.match(r'hookwork_outbound_seconds_bucket\{le="([^"]+)"\} (\d+)$', ln)
            if m:
                b[m.group(1)] = int(m.group(2))
        eq(sorted(b), sorted(["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
                              "2.5", "5", "10", "+Inf"]), "the histogram's buckets")
        eq(b["+Inf"], 2, "two calls counted")
        eq(b["0.25"], 1, "the 0.3 s call is not in le=0.25")
        for le in ("0.5", "1", "2.5", "5", "10"):
            eq(b[le], 2, "both calls in le=" + le)
        ok(b["0.005"] <= b["0.01"] <= b["0.025"] <= b["0.05"] <= b["0.1"] <= 1,
           "cumulative and the fast call at most once", b)
        m = re.search(r"^hookwork_outbound_seconds_sum ([0-9.]+)$", text, re.M)
        ok(m and 0.3 <= float(m.group(1)) < 5, "the sum includes the slow call", m and m.group(0))


# ---------------------------------------------------------------- keep-alive

class _CountingServer:
    """HTTP/1.1 keep-alive server on loopback that counts TCP connections."""

    def __init__(self, delay=0.0):
        import http.server
        import socketserver
        srv = self
        self.conns = 0
        self.requests = 0
        self._lock = threading.Lock()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                with srv._lock:
                    srv.conns += 1
                http.server.BaseHTTPRequestHandler.setup(self)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                with srv._lock:
                    srv.requests += 1
                if delay:
                    time.sleep(delay)
                out = b'{"ok":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

            def handle_error(self, *a):
                pass

        self._srv = S(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self._srv.server_address[1]
        self._t = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05},
                                   daemon=True)
        self._t.start()

    def close(self):
        self._srv.shutdown()
        self._srv.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


@test
def outbound_calls_to_one_host_reuse_connections():
    """Keep-alive (issue 14): 50 sequential transactions, each one hw.request
    POST to the same host, share pooled connections instead of opening one
    TCP connection per call."""
    with _CountingServer() as srv, Engine() as e:
        e.write("ka.lua", cycle_lua("ka", """
    hw.request { name = "call", method = "POST", url = %s, json = { n = 1 } },""" % lua_str(srv.url + "/ok")))
        e.start()
        for i in range(50):
            t = finish(e, fire(e, "ka", {"i": i}))
            expect_state(t, "completed")
        eq(srv.requests, 50, "requests that reached the server")
        ok(srv.conns <= 5, "50 sequential calls to one host use at most 5 TCP connections "
           "(keep-alive), not one each", srv.conns)


def _pool_round(e, n):
    ids = [None] * n

    def one(i):
        ids[i] = fire(e, "pool", {"i": i})
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for tid in ids:
        ok(tid, "every trigger answered 202")
        expect_state(finish(e, tid, timeout=20), "completed")


@test
def outbound_pool_env_bounds_idle_connections():
    """HOOKWORK_OUTBOUND_POOL: idle keep-alive connections kept.  Two rounds of
    8 concurrent calls (the server holds each 0.3 s, so 8 connections are
    open): with the default pool the second round reuses them; with
    HOOKWORK_OUTBOUND_POOL=1 only one is kept, so the second round opens
    new ones.  A bad value is named and the default used."""
    steps = """
    hw.request { name = "call", method = "POST", url = %s, json = { n = 1 } },"""
    for pool in (None, "1"):
        with _CountingServer(delay=0.3) as srv, \
                Engine(env={"HOOKWORK_OUTBOUND_POOL": pool} if pool else None) as e:
            e.write("pool.lua", cycle_lua("pool", steps % lua_str(srv.url + "/ok")))
            e.start()
            _pool_round(e, 8)
            first = srv.conns
            ok(first >= 6, "8 concurrent calls open several connections", first)
            _pool_round(e, 8)
            eq(srv.requests, 16, "requests that reached the server")
            if pool is None:
                ok(srv.conns <= first + 2, "default pool: the second round reuses the first "
                   "round's %d connections" % first, srv.conns)
            else:
                ok(srv.conns >= first + 6, "pool of 1: the second round opens new connections "
                   "(first round opened %d)" % first, srv.conns)
    with Engine(env={"HOOKWORK_OUTBOUND_POOL": "lots"}) as e:
        e.write("pool.lua", cycle_lua("pool", steps % lua_str("http://127.0.0.1:9/ok")))
        e.start()
        contains(e.log(), "HOOKWORK_OUTBOUND_POOL: expected a positive number, got 'lots'")
