"""Issue 2: engine foundation — fire-and-forget webhooks, custom fields, store, admin API,
HTTP edge cases, crash recovery. Black-box, against SPEC.md."""

import json
import os
import re
import signal
import socket
import threading
import time
import urllib.parse

from lib import (cycle, Engine, Recorder, RawConn, test, eq, ne, ok, contains, fail, wait_until,
                 raw_request, parse_responses, http_bytes, run_cli, lua_str)


SIMPLE = cycle("simple", """
    hw.webhook { name = "in" },
    hw.step { name = "mark", run = function(tx) tx.data.seen = true end },
""")

FIELDS = cycle("typed", """
    hw.webhook { name = "in", fields = {
      order_id = "string", amount = "number", count = "integer?", flag = "boolean?",
      ["customer.email"] = "string?", meta = "object?", tags = "array?", extra = "any?" } },
    hw.step { name = "s", run = function(tx) tx.data.ran = true end },
""")


def accepted(r, msg=""):
    """Assert a fire-and-forget acceptance and return the transaction id."""
    eq(r.status, 202, msg or "status (body %r)" % r.body)
    j = r.json
    ok(isinstance(j, dict), "202 body is a JSON object", r.body)
    eq(sorted(j), ["accepted", "transaction"], "202 body keys")
    eq(j["accepted"], True, "accepted")
    ok(isinstance(j["transaction"], str) and j["transaction"] != "", "transaction id is a non-empty string", j)
    return j["transaction"]


def error_400(r, field=None, exact=None):
    eq(r.status, 400, "status (body %r)" % r.body)
    j = r.json
    ok(isinstance(j, dict) and isinstance(j.get("error"), str), "400 body is {\"error\": ...}", r.body)
    if exact is not None:
        eq(j, {"error": exact}, "400 body")
    if field is not None:
        contains(j["error"], "field '%s'" % field, "error names the field")
    return j["error"]


def tx_count(e):
    return len(e.txs(limit=10000))


def history(t):
    return [(h.get("step"), h.get("status"), h.get("run")) for h in t.get("history") or []]


# ------------------------------------------------------------------ fire and forget

@test
def fire_and_forget_202_and_completes():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        url = e.hook_url("simple", "in")
        r = e.post(url, json={"order_id": "A1", "amount": 5, "nested": {"k": [1, 2]}})
        tid = accepted(r)
        ok(r.headers.get("content-type", "").startswith("application/json"),
           "engine answers are JSON", r.headers)
        t = e.wait_tx(tid, "completed")
        eq(t["id"], tid)
        eq(t["cycle"], "simple")
        eq(t["state"], "completed")
        eq(t["step"], "mark", "step of a completed transaction is the last step")
        eq(t["data"].get("order_id"), "A1")
        eq(t["data"].get("amount"), 5)
        eq(t["data"].get("nested"), {"k": [1, 2]}, "without fields every top-level field is copied")
        eq(t["data"].get("seen"), True)
        eq(history(t), [("in", "ok", 1), ("mark", "ok", 1)], "history")
        for h in t["history"]:
            ok("started" in h and "ended" in h, "history entries have started/ended", h)
            ok(h.get("started") is not None and h.get("ended") is not None, "started/ended set", h)


@test
def transaction_ids_are_distinct_strings():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        url = e.hook_url("simple", "in")
        ids = [accepted(e.post(url, json={"n": i})) for i in range(5)]
        eq(len(set(ids)), 5, "distinct ids")
        for i, tid in enumerate(ids):
            t = e.wait_tx(tid, "completed")
            eq(t["data"]["n"], i)


@test
def tx_request_is_filled():
    src = cycle("req", """
    hw.webhook { name = "in" },
    hw.step { name = "copy", run = function(tx)
      local r = tx.request
      tx.data.req = { method = r.method, path = r.path, hdr = r.headers["x-test"],
                      q = r.query and r.query.q, ip = r.ip, body = r.body,
                      ja = r.json and r.json.a }
    end },
""")
    with Engine({"req.lua": src}) as e:
        e.start()
        path = e.hook_path("req", "in")
        body = json.dumps({"a": 7})
        r = e.post(path + "?q=yes", body=body,
                   headers={"Content-Type": "application/json", "X-Test": "hello"})
        t = e.wait_tx(accepted(r), "completed")
        req = t["data"]["req"]
        eq(req.get("method"), "POST")
        ok(str(req.get("path", "")).startswith(path), "tx.request.path", req)
        eq(req.get("hdr"), "hello", "header names are lower-case in tx.request.headers")
        eq(req.get("q"), "yes", "tx.request.query")
        eq(req.get("ip"), "127.0.0.1", "tx.request.ip")
        eq(req.get("body"), body, "tx.request.body")
        eq(req.get("ja"), 7, "tx.request.json")


# ------------------------------------------------------------------ custom fields

@test
def fields_malformed_json_400():
    with Engine({"typed.lua": FIELDS}) as e:
        e.start()
        url = e.hook_url("typed", "in")
        n0 = tx_count(e)
        r = e.post(url, body='{"order_id": "A1", "amount": ', headers={"Content-Type": "application/json"})
        error_400(r)
        r = e.post(url, body='not json at all', headers={"Content-Type": "application/json"})
        error_400(r)
        eq(tx_count(e), n0, "rejected requests store nothing")


@test
def fields_missing_400_names_field():
    with Engine({"typed.lua": FIELDS}) as e:
        e.start()
        url = e.hook_url("typed", "in")
        n0 = tx_count(e)
        error_400(e.post(url, json={"order_id": "A1"}), field="amount")
        error_400(e.post(url, json={"amount": 3}), field="order_id")
        error_400(e.post(url, json={}), )
        eq(tx_count(e), n0, "rejected requests store nothing")


@test
def fields_mistyped_400_exact_message():
    with Engine({"typed.lua": FIELDS}) as e:
        e.start()
        url = e.hook_url("typed", "in")
        n0 = tx_count(e)
        error_400(e.post(url, json={"order_id": "A1", "amount": "12"}),
                  exact="field 'amount': expected number")
        error_400(e.post(url, json={"order_id": 5, "amount": 1}),
                  exact="field 'order_id': expected string")
        error_400(e.post(url, json={"order_id": "A1", "amount": 1, "flag": "true"}),
                  exact="field 'flag': expected boolean")
        error_400(e.post(url, json={"order_id": "A1", "amount": 1, "meta": [1, 2]}),
                  exact="field 'meta': expected object")
        error_400(e.post(url, json={"order_id": "A1", "amount": 1, "tags": {"a": 1}}),
                  exact="field 'tags': expected array")
        error_400(e.post(url, json={"order_id": "A1", "amount": 1, "customer": {"email": 5}}),
                  exact="field 'customer.email': expected string")
        eq(tx_count(e), n0, "rejected requests store nothing")


@test
def fields_integer_vs_number():
    with Engine({"typed.lua": FIELDS}) as e:
        e.start()
        url = e.hook_url("typed", "in")
        error_400(e.post(url, json={"order_id": "A1", "amount": 1, "count": 2.5}),
                  exact="field 'count': expected integer")
        t = e.wait_tx(accepted(e.post(url, json={"order_id": "A1", "amount": 3, "count": 4})), "completed")
        eq(t["data"]["amount"], 3, "an integer is a number")
        eq(t["data"]["count"], 4)
        t = e.wait_tx(accepted(e.post(url, json={"order_id": "A2", "amount": 2.5})), "completed")
        eq(t["data"]["amount"], 2.5)


@test
def fields_boolean_object_array_any():
    with Engine({"typed.lua": FIELDS}) as e:
        e.start()
        url = e.hook_url("typed", "in")
        body = {"order_id": "A1", "amount": 1, "flag": False, "meta": {"a": {"b": 1}},
                "tags": ["x", "y"], "extra": [1, "two", None]}
        t = e.wait_tx(accepted(e.post(url, json=body)), "completed")
        d = t["data"]
        eq(d["flag"], False)
        eq(d["meta"], {"a": {"b": 1}})
        eq(d["tags"], ["x", "y"])
        eq(d["extra"][:2], [1, "two"])
        eq(d["ran"], True)


@test
def fields_optional_and_undeclared():
    with Engine({"typed.lua": FIELDS}) as e:
        e.start()
        url = e.hook_url("typed", "in")
        t = e.wait_tx(accepted(e.post(url, json={"order_id": "A1", "amount": 1, "junk": 9})), "completed")
        d = t["data"]
        eq(d.get("order_id"), "A1")
        ok("count" not in d and "flag" not in d, "absent optional fields stay absent", d)
        ok("junk" not in d, "with fields declared, only declared fields are copied", d)
        error_400(e.post(url, json={"order_id": "A1", "amount": 1, "count": "x"}),
                  exact="field 'count': expected integer")


@test
def fields_nested_dotted():
    with Engine({"typed.lua": FIELDS}) as e:
        e.start()
        url = e.hook_url("typed", "in")
        t = e.wait_tx(accepted(e.post(url, json={"order_id": "A1", "amount": 1,
                                                  "customer": {"email": "a@b.c"}})), "completed")
        eq(t["data"].get("customer"), {"email": "a@b.c"}, "customer.email lands at data.customer.email")
        ok("customer.email" not in t["data"], "no flat dotted key", t["data"])
    req = cycle("nested", """
    hw.webhook { name = "in", fields = { ["a.b.c"] = "integer" } },
""")
    with Engine({"nested.lua": req}) as e:
        e.start()
        url = e.hook_url("nested", "in")
        error_400(e.post(url, json={"a": {"b": {}}}), field="a.b.c")
        error_400(e.post(url, json={"a": {"b": {"c": "1"}}}), exact="field 'a.b.c': expected integer")
        t = e.wait_tx(accepted(e.post(url, json={"a": {"b": {"c": 1}}})), "completed")
        eq(t["data"]["a"]["b"]["c"], 1)


@test
def fields_form_encoded_converted():
    with Engine({"typed.lua": FIELDS}) as e:
        e.start()
        url = e.hook_url("typed", "in")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        body = urllib.parse.urlencode({"order_id": "A 1&b", "amount": "12.5", "count": "3", "flag": "true"})
        t = e.wait_tx(accepted(e.post(url, body=body, headers=form)), "completed")
        d = t["data"]
        eq(d.get("order_id"), "A 1&b", "form values are url-decoded")
        eq(d.get("amount"), 12.5, "form number converted")
        eq(d.get("count"), 3, "form integer converted")
        eq(d.get("flag"), True, "form boolean converted")
        n0 = tx_count(e)
        error_400(e.post(url, body="order_id=A1&amount=abc", headers=form),
                  exact="field 'amount': expected number")
        error_400(e.post(url, body="order_id=A1&amount=1&count=2.5", headers=form),
                  exact="field 'count': expected integer")
        error_400(e.post(url, body="order_id=A1", headers=form), field="amount")
        eq(tx_count(e), n0, "rejected requests store nothing")


@test
def no_fields_copies_top_level_json():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        url = e.hook_url("simple", "in")
        body = {"s": "x", "n": 1.5, "b": True, "o": {"deep": {"er": 1}}, "a": [1, {"z": 2}]}
        t = e.wait_tx(accepted(e.post(url, json=body)), "completed")
        for k, v in body.items():
            eq(t["data"].get(k), v, "field %s copied" % k)


# ------------------------------------------------------------------ answer table rows

@test
def unknown_token_404():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        n0 = tx_count(e)
        eq(e.post("/hooks/" + "A" * 22, json={}).status, 404)
        eq(e.post("/hooks/" + "Zq9_-" * 6, json={}).status, 404)
        eq(e.post("/hooks/", json={}).status, 404)
        eq(e.post("/nothing/here", json={}).status, 404)
        eq(tx_count(e), n0, "rejected requests store nothing")


@test
def wrong_method_405_and_methods_option():
    both = cycle("both", """
    hw.webhook { name = "in", methods = { "GET", "POST" } },
    hw.step { name = "s", run = function(tx) tx.data.m = tx.request.method end },
""")
    with Engine({"simple.lua": SIMPLE, "both.lua": both}) as e:
        e.start()
        url = e.hook_url("simple", "in")
        n0 = tx_count(e)
        eq(e.post(url, method="GET").status, 405, "GET on a default (POST-only) webhook")
        eq(e.post(url, json={}, method="PUT").status, 405, "PUT on a default webhook")
        eq(e.post(url, json={}, method="DELETE").status, 405, "DELETE on a default webhook")
        eq(tx_count(e), n0, "rejected requests store nothing")
        burl = e.hook_url("both", "in")
        t = e.wait_tx(accepted(e.post(burl, method="GET")), "completed")
        eq(t["data"]["m"], "GET")
        t = e.wait_tx(accepted(e.post(burl, json={"x": 1})), "completed")
        eq(t["data"]["m"], "POST")
        eq(e.post(burl, json={}, method="PATCH").status, 405)


def _send_body(port, path, body, timeout=10):
    """Send a POST with a big body over a raw socket, tolerating an early answer+close."""
    with RawConn(port, timeout=timeout) as c:
        head = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (path, len(body))).encode()
        try:
            c.send(head)
            c.send(body)
        except OSError:
            pass
        rs = c.read_responses(1, timeout=timeout)
        ok(rs, "an answer arrived", c.buf[:300])
        return rs[0]


@test
def body_over_max_body_413():
    with Engine({"simple.lua": SIMPLE}, args=["--max-body", "1000"]) as e:
        e.start()
        path = e.hook_path("simple", "in")
        n0 = tx_count(e)
        big = json.dumps({"pad": "x" * 2000}).encode()
        eq(_send_body(e.port, path, big).status, 413, "body over --max-body")
        eq(tx_count(e), n0, "rejected requests store nothing")
        small = json.dumps({"pad": "x" * 900}).encode()
        ok(len(small) <= 1000)
        accepted(e.post(path, body=small, headers={"Content-Type": "application/json"}))
        # chunked body over the limit too
        with RawConn(e.port) as c:
            try:
                c.send(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n" % path).encode())
                for _ in range(4):
                    c.send(b"258\r\n" + b" " * 600 + b"\r\n")
                c.send(b"0\r\n\r\n")
            except OSError:
                pass
            rs = c.read_responses(1)
            ok(rs, "an answer to an oversized chunked body", c.buf[:200])
            eq(rs[0].status, 413, "chunked body over --max-body")
        eq(tx_count(e), n0 + 1)


@test
def body_default_limit_1mib():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        path = e.hook_path("simple", "in")
        big = json.dumps({"pad": "x" * (1024 * 1024 + 10)}).encode()
        eq(_send_body(e.port, path, big).status, 413, "body over 1 MiB")
        fine = json.dumps({"pad": "x" * (1000 * 1000)}).encode()
        ok(len(fine) < 1024 * 1024)
        accepted(e.post(path, body=fine, headers={"Content-Type": "application/json"}))


@test
def stopped_cycle_503():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        url = e.hook_url("simple", "in")
        accepted(e.post(url, json={}))
        e.stop_cycle("simple")
        eq(e.cycle("simple")["state"], "stopped")
        n0 = tx_count(e)
        r = e.post(url, json={"a": 1})
        eq(r.status, 503)
        eq(r.json, {"error": "cycle 'simple' is stopped"})
        eq(tx_count(e), n0, "rejected requests store nothing")
        e.start_cycle("simple")
        eq(e.cycle("simple")["state"], "running")
        accepted(e.post(url, json={}))


@test
def rejected_requests_store_nothing():
    with Engine({"typed.lua": FIELDS, "simple.lua": SIMPLE}, args=["--max-body", "500"]) as e:
        e.start()
        turl = e.hook_url("typed", "in")
        surl = e.hook_url("simple", "in")
        e.wait_tx(accepted(e.post(surl, json={"x": 1})), "completed")
        before = e.txs(limit=10000)
        counts_before = e.cycle("typed")["counts"]
        eq(e.post(turl, body="{", headers={"Content-Type": "application/json"}).status, 400)
        eq(e.post(turl, json={"order_id": "A"}).status, 400)
        eq(e.post(turl, json={"order_id": "A", "amount": "1"}).status, 400)
        eq(e.post("/hooks/" + "b" * 30, json={}).status, 404)
        eq(e.post(turl, method="GET").status, 405)
        eq(_send_body(e.port, urllib.parse.urlsplit(turl).path,
                      json.dumps({"order_id": "A", "amount": 1, "pad": "x" * 600}).encode()).status, 413)
        e.stop_cycle("simple")
        eq(e.post(surl, json={}).status, 503)
        after = e.txs(limit=10000)
        eq([t["id"] for t in after], [t["id"] for t in before], "transaction list unchanged")
        eq(e.cycle("typed")["counts"], counts_before, "counts unchanged")


# ------------------------------------------------------------------ step kinds

@test
def decision_on_false_stop():
    src = cycle("dec", """
    hw.webhook { name = "in", fields = { amount = "number" } },
    hw.decision { name = "big?", test = function(tx) return tx.data.amount > 100 end,
                  on_false = "stop" },
    hw.step { name = "after", run = function(tx) tx.data.after = true end },
""")
    with Engine({"dec.lua": src}) as e:
        e.start()
        url = e.hook_url("dec", "in")
        small = accepted(e.post(url, json={"amount": 5}))
        big = accepted(e.post(url, json={"amount": 500}))
        t = e.wait_tx(small, {"completed", "failed"})
        eq(t["state"], "completed", "a decision that stops completes the transaction")
        eq(t["step"], "big?", "step is the decision that stopped it")
        ok("after" not in t["data"], "later step not run", t["data"])
        eq(history(t), [("in", "ok", 1), ("big?", "stopped", 1)])
        t = e.wait_tx(big, {"completed", "failed"})
        eq(t["state"], "completed")
        eq(t["step"], "after")
        eq(t["data"].get("after"), True)
        eq(history(t), [("in", "ok", 1), ("big?", "ok", 1), ("after", "ok", 1)])


@test
def decision_jump_to_named_step():
    src = cycle("jump", """
    hw.webhook { name = "in" },
    hw.decision { name = "one?", test = function(tx) return tx.data.x == 1 end, on_false = "c" },
    hw.step { name = "b", run = function(tx) tx.data.b = true end },
    hw.step { name = "c", run = function(tx) tx.data.c = true end },
""")
    with Engine({"jump.lua": src}) as e:
        e.start()
        url = e.hook_url("jump", "in")
        t = e.wait_tx(accepted(e.post(url, json={"x": 2})), {"completed", "failed"})
        eq(t["state"], "completed")
        ok("b" not in t["data"], "jumped over b", t["data"])
        eq(t["data"].get("c"), True)
        eq(t["step"], "c")
        eq([h[0] for h in history(t)], ["in", "one?", "c"])
        t = e.wait_tx(accepted(e.post(url, json={"x": 1})), {"completed", "failed"})
        eq(t["state"], "completed")
        eq((t["data"].get("b"), t["data"].get("c")), (True, True))
        eq([h[0] for h in history(t)], ["in", "one?", "b", "c"])


@test
def map_dotted_and_function():
    src = cycle("mapper", """
    hw.webhook { name = "in" },
    hw.map { fields = {
      total = "amount",
      ["out.email"] = "customer.email",
      ["out.deep.id"] = "order_id",
      label = function(tx) return tx.data.order_id .. "!" end,
    } },
    hw.step { run = function(tx) tx.data.after = tx.data.total * 2 end },
""")
    with Engine({"mapper.lua": src}) as e:
        e.start()
        url = e.hook_url("mapper", "in")
        t = e.wait_tx(accepted(e.post(url, json={"order_id": "A1", "amount": 21,
                                                  "customer": {"email": "e@x"}})), {"completed", "failed"})
        eq(t["state"], "completed", "state (history %r)" % t.get("history"))
        d = t["data"]
        eq(d.get("total"), 21)
        eq(d.get("out", {}).get("email"), "e@x", "dotted target/source")
        eq(d.get("out", {}).get("deep"), {"id": "A1"})
        eq(d.get("label"), "A1!", "function source")
        eq(d.get("order_id"), "A1", "map merges, keeps other fields")
        eq(d.get("customer"), {"email": "e@x"})
        eq(d.get("after"), 42)
        eq([h[0] for h in history(t)], ["in", "map 2", "step 3"], "default step names KIND N")


@test
def step_error_fails_transaction():
    src = cycle("err", """
    hw.webhook { name = "in" },
    hw.step { name = "explode", run = function(tx) error("boom") end },
    hw.step { name = "never", run = function(tx) tx.data.never = true end },
""")
    with Engine({"err.lua": src, "simple.lua": SIMPLE}) as e:
        e.start()
        t = e.wait_tx(accepted(e.post(e.hook_url("err", "in"), json={"a": 1})), {"failed", "completed"})
        eq(t["state"], "failed")
        eq(t["step"], "explode", "step is the failing step")
        ok("never" not in t["data"])
        h = [x for x in t["history"] if x.get("step") == "explode"]
        eq(len(h), 1, "one history entry for the failing step")
        eq(h[0].get("status"), "failed")
        contains(h[0].get("error") or "", "boom", "history error carries the message")
        ok(all(x.get("step") != "never" for x in t["history"]))
        # the engine goes on serving
        e.wait_tx(accepted(e.post(e.hook_url("simple", "in"), json={})), "completed")


@test
def endless_loop_fails_only_its_transaction():
    loop = cycle("loop", """
    hw.webhook { name = "in" },
    hw.step { name = "spin", run = function(tx) local i = 0 while true do i = i + 1 end end },
""")
    with Engine({"loop.lua": loop, "simple.lua": SIMPLE}) as e:
        e.start()
        bad = accepted(e.post(e.hook_url("loop", "in"), json={}, timeout=40))
        good = accepted(e.post(e.hook_url("simple", "in"), json={"ok": 1}, timeout=40))
        t = e.wait_tx(bad, {"failed", "completed"}, timeout=40)
        eq(t["state"], "failed")
        eq(t["step"], "spin")
        e.wait_tx(good, "completed", timeout=40)
        eq(e.admin("GET", "/healthz").status, 200)
        e.wait_tx(accepted(e.post(e.hook_url("simple", "in"), json={})), "completed")


@test
def sandbox_blocks_dangerous_functions():
    src = cycle("sandbox", """
    hw.webhook { name = "in" },
    hw.step { name = "probe", run = function(tx)
      local function absent(f)
        local ok, v = pcall(f)
        return (not ok) or v == nil
      end
      local r = {}
      r.io = absent(function() return io end)
      r.os_execute = absent(function() return os.execute end)
      r.os_exit = absent(function() return os.exit end)
      r.debug = absent(function() return debug end)
      r.require_io = absent(function() local m = require("io"); return m and m.open end)
      r.require_debug = absent(function() local m = require("debug"); return m and m.getinfo end)
      local loaded = false
      local okd, dumped = pcall(function() return string.dump(function() return 1 end) end)
      if okd and type(dumped) == "string" then
        local okl, f = pcall(load, dumped, "bin", "b")
        if okl and f then loaded = true end
        local okl2, f2 = pcall(load, dumped)
        if okl2 and f2 then loaded = true end
      end
      r.binary_loaded = loaded
      r.getenv = os.getenv("E2E_PROBE")
      r.time = type(os.time()) == "number"
      r.date = type(os.date("%Y")) == "string"
      r.clock = type(os.clock()) == "number"
      tx.data.sandbox = r
    end },
""")
    with Engine({"sandbox.lua": src}, env={"E2E_PROBE": "hello"}) as e:
        e.start()
        t = e.wait_tx(accepted(e.post(e.hook_url("sandbox", "in"), json={})), {"completed", "failed"})
        eq(t["state"], "completed", "probe step (history %r)" % t.get("history"))
        r = t["data"]["sandbox"]
        for k in ("io", "os_execute", "os_exit", "debug", "require_io", "require_debug"):
            eq(r.get(k), True, "%s must be unavailable" % k)
        eq(r.get("binary_loaded"), False, "binary chunks must not load")
        eq(r.get("getenv"), "hello", "os.getenv stays")
        eq((r.get("time"), r.get("date"), r.get("clock")), (True, True, True), "os.time/date/clock stay")


# ------------------------------------------------------------------ URLs

TOKEN_URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/hooks/([A-Za-z0-9_-]{22,})$")


@test
def webhook_url_format_and_stable_across_restart():
    other = cycle("other", """
    hw.webhook { name = "in" },
""")
    with Engine({"simple.lua": SIMPLE, "other.lua": other}) as e:
        e.start()
        u1 = e.hook_url("simple", "in")
        u2 = e.hook_url("other", "in")
        for u in (u1, u2):
            m = TOKEN_URL.match(u)
            ok(m, "url is http://HOST:PORT/hooks/TOKEN with a 22+ char URL-safe token", u)
            eq(int(m.group(1)), e.port, "url uses the --listen port")
        ne(u1, u2, "each webhook has its own URL")
        accepted(e.post(u1, json={}))
        eq(e.restart(), 0, "SIGTERM exit code")
        eq(e.hook_url("simple", "in"), u1, "URL stable across restart")
        eq(e.hook_url("other", "in"), u2, "URL stable across restart")
        accepted(e.post(u1, json={}))


@test
def public_url_option():
    with Engine({"simple.lua": SIMPLE}, args=["--public-url", "https://hooks.example.com"]) as e:
        e.start()
        u = e.hook_url("simple", "in")
        ok(re.match(r"^https://hooks\.example\.com/hooks/[A-Za-z0-9_-]{22,}$", u), "url from --public-url", u)
        accepted(e.post(urllib.parse.urlsplit(u).path, json={}))


# ------------------------------------------------------------------ admin API

@test
def admin_token_required_except_healthz():
    with Engine({"simple.lua": SIMPLE}, env={"HOOKWORK_ADMIN_TOKEN": "s3cret-token"}) as e:
        e.start()
        url = e.hook_url("simple", "in")  # uses the token
        tid = accepted(e.post(url, json={}))   # webhooks need no admin token
        e.wait_tx(tid, "completed")
        routes = [("GET", "/api/cycles"), ("POST", "/api/cycles/simple/stop"),
                  ("POST", "/api/cycles/simple/start"), ("GET", "/api/transactions"),
                  ("GET", "/api/transactions?cycle=simple"), ("GET", "/api/transactions/" + tid),
                  ("GET", "/api/connectors"), ("GET", "/metrics"), ("GET", "/api/nonexistent")]
        for method, path in routes:
            eq(e.admin(method, path, token="").status, 401, "%s %s without token" % (method, path))
            eq(e.admin(method, path, token="wrong").status, 401, "%s %s with a wrong token" % (method, path))
            eq(e.admin(method, path, token="", headers={"Authorization": "s3cret-token"}).status, 401,
               "%s %s without Bearer" % (method, path))
        eq(e.cycle("simple")["state"], "running", "401 stop changed nothing")
        eq(e.admin("GET", "/healthz", token="").status, 200, "/healthz needs no token")
        eq(e.admin("GET", "/api/cycles").status, 200)
        eq(e.admin("GET", "/api/transactions/" + tid).status, 200)
        eq(e.admin("GET", "/metrics").status, 200)


@test
def cycles_listing_fields():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        url = e.hook_url("simple", "in")
        for _ in range(2):
            e.wait_tx(accepted(e.post(url, json={})), "completed")
        c = e.cycle("simple")
        eq(c["state"], "running")
        eq(c.get("connector"), "default", "connector defaults to default")
        ok(str(c.get("file", "")).endswith("simple.lua"), "file", c)
        ok("load_error" not in c or not c["load_error"], "no load_error", c)
        eq([w["step"] for w in c["webhooks"]], ["in"])
        eq(c["webhooks"][0]["ip_filtered"], False)
        counts = c["counts"]
        eq(sorted(counts), ["completed", "expired", "failed", "running", "waiting"])
        eq(counts["completed"], 2)


@test
def cycle_name_defaults_to_file_name_and_load_error_listed():
    noname = """local hw = require "hookwork"
return hw.cycle { steps = { hw.webhook { name = "in" } } }
"""
    broken = """local hw = require "hookwork"
return hw.cycle { name = "broken", steps = { hw.webhook { name = "in" }
"""
    with Engine({"unnamed.lua": noname, "broken.lua": broken}) as e:
        e.start()
        accepted(e.post(e.hook_url("unnamed", "in"), json={}))
        b = e.cycle("broken")
        eq(b["state"], "stopped", "a file that never loaded is stopped")
        ok(isinstance(b.get("load_error"), str) and b["load_error"], "load_error shown", b)


@test
def start_stop_state_kept_across_restart():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        url = e.hook_url("simple", "in")
        e.stop_cycle("simple")
        eq(e.post(url, json={}).status, 503)
        eq(e.restart(), 0)
        eq(e.cycle("simple")["state"], "stopped", "stopped state kept across restart")
        eq(e.post(url, json={}).status, 503)
        e.start_cycle("simple")
        accepted(e.post(url, json={}))
        eq(e.restart(), 0)
        eq(e.cycle("simple")["state"], "running", "running state kept across restart")
        accepted(e.post(url, json={}))
        st = e.admin("POST", "/api/cycles/nosuch/start").status
        ok(400 <= st < 500, "start of an unknown cycle is refused", st)


@test
def autostart_false_starts_stopped():
    src = cycle("lazy", """
    hw.webhook { name = "in" },
""", extra="\n  autostart = false,")
    with Engine({"lazy.lua": src}) as e:
        e.start()
        eq(e.cycle("lazy")["state"], "stopped")
        url = e.hook_url("lazy", "in")
        r = e.post(url, json={})
        eq(r.status, 503)
        eq(r.json, {"error": "cycle 'lazy' is stopped"})
        e.start_cycle("lazy")
        accepted(e.post(url, json={}))
        eq(e.restart(), 0)
        eq(e.cycle("lazy")["state"], "running", "autostart applies only when first seen")
        accepted(e.post(url, json={}))


@test
def transactions_filters_newest_first():
    bad = cycle("bad", """
    hw.webhook { name = "in" },
    hw.step { name = "x", run = function(tx) if tx.data.fail then error("nope") end end },
""")
    with Engine({"simple.lua": SIMPLE, "bad.lua": bad}) as e:
        e.start()
        su, bu = e.hook_url("simple", "in"), e.hook_url("bad", "in")
        order = []
        for i in range(3):
            order.append(accepted(e.post(su, json={"i": i})))
            time.sleep(0.02)
        for f in (True, False):
            order.append(accepted(e.post(bu, json={"fail": f})))
            time.sleep(0.02)
        for tid in order:
            e.wait_tx(tid, {"completed", "failed"})
        all_ = e.txs()
        for t in all_:
            ok(isinstance(t["id"], str), "ids are strings", t)
            for k in ("id", "cycle", "state", "step", "created", "updated"):
                ok(k in t, "listing has %s" % k, t)
        eq([t["id"] for t in all_], list(reversed(order)), "newest first")
        eq([t["id"] for t in e.txs(cycle="simple")], list(reversed(order[:3])))
        eq([t["id"] for t in e.txs(cycle="bad")], list(reversed(order[3:])))
        eq([t["id"] for t in e.txs(state="failed")], [order[3]])
        eq([t["id"] for t in e.txs(cycle="bad", state="completed")], [order[4]])
        eq([t["id"] for t in e.txs(limit=2)], list(reversed(order))[:2])
        eq([t["id"] for t in e.txs(cycle="simple", limit=1)], [order[2]])
        eq(e.txs(cycle="nosuch"), [])
        eq(e.admin("GET", "/api/transactions/nosuch-id").status, 404)


def parse_metrics(text):
    out = []
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", ln)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric(samples, name, **labels):
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == str(x) for k, x in labels.items())]
    return sum(vals) if vals else None


@test
def metrics_names_from_spec():
    with Recorder() as rec:
        src = cycle("met", """
    hw.webhook { name = "in" },
    hw.step { name = "call", run = function(tx)
      local r = hw.http.get(%s .. "/m")
      tx.data.got = r.status
    end },
""" % lua_str(rec.url))
        with Engine({"met.lua": src}) as e:
            e.start()
            url = e.hook_url("met", "in")
            t = e.wait_tx(accepted(e.post(url, json={})), {"completed", "failed"})
            eq(t["state"], "completed", "history %r" % t.get("history"))
            eq(t["data"]["got"], 200)
            text = e.metrics()
            for name in ("hookwork_webhook_requests_total", "hookwork_tasks_total",
                         "hookwork_transactions", "hookwork_outbound_requests_total"):
                ok(re.search(r"^%s[{ ]" % name, text, re.M), "metric %s present" % name, text[:2000])
            s = parse_metrics(text)
            v = metric(s, "hookwork_webhook_requests_total", cycle="met", step="in", status=202)
            ok(v is not None and v >= 1, "webhook requests by cycle/step/status", text[:2000])
            v = metric(s, "hookwork_tasks_total", cycle="met")
            ok(v is not None and v >= 1, "tasks by cycle", text[:2000])
            eq(metric(s, "hookwork_transactions", cycle="met", state="completed"), 1.0,
               "transactions by cycle/state")
            # SPEC names the labels, not the status format: the code or its class
            v = (metric(s, "hookwork_outbound_requests_total", cycle="met", method="GET", status=200) or
                 metric(s, "hookwork_outbound_requests_total", cycle="met", method="GET", status="2xx"))
            ok(v is not None and v >= 1, "outbound requests by cycle/method/status",
               [ln for ln in text.splitlines() if "outbound" in ln])


@test
def metrics_loop_iterations_and_lua_allocations():
    # the loop's work per iteration and the Lua allocations (the bench's
    # "where the time goes"): counts move with requests, the histogram is
    # cumulative, and a step that keeps the loop 60 ms shows as a long
    # iteration (the time poll sleeps is not counted as work)
    src = cycle("spin", """
    hw.webhook { name = "in" },
    hw.step { name = "spin", run = function(tx)
      if tx.data.spin then
        local t = os.clock()
        while os.clock() - t < 0.06 do end
      end
    end },
""")
    with Engine({"spin.lua": src}) as e:
        e.start()
        url = e.hook_url("spin", "in")
        time.sleep(0.3)  # idle: poll sleeps, which is no work

        def sample():
            s = parse_metrics(e.metrics())
            les = sorted((float(l["le"]), v) for n, l, v in s
                         if n == "hookwork_loop_iteration_seconds_bucket" and l["le"] != "+Inf")
            return {"n": metric(s, "hookwork_loop_iteration_seconds_count"),
                    "sum": metric(s, "hookwork_loop_iteration_seconds_sum"),
                    "inf": metric(s, "hookwork_loop_iteration_seconds_bucket", le="+Inf"),
                    "max": metric(s, "hookwork_loop_iteration_max_seconds"),
                    "cpu_max": metric(s, "hookwork_loop_iteration_cpu_max_seconds"),
                    "cpu_n": metric(s, "hookwork_loop_iteration_cpu_seconds_count"),
                    "allocs": metric(s, "hookwork_lua_allocations_total"),
                    "heap": metric(s, "hookwork_lua_heap_bytes"), "les": les}
        a = sample()
        ok(a["n"] is not None and a["allocs"] is not None and a["heap"] > 0, "series present", a)
        ok(a["max"] < 0.05, "no long iteration yet (idle time is not work)", a)
        ids = [accepted(e.post(url, json={"i": i})) for i in range(20)]
        for i in ids:
            e.wait_tx(i, "completed")
        b = sample()
        ok(b["n"] > a["n"] and b["inf"] == b["n"], "iterations counted", (a, b))
        ok(b["allocs"] > a["allocs"] + 20, "Lua allocations counted", (a, b))
        counts = [v for _, v in b["les"]]
        eq(counts, sorted(counts), "buckets are cumulative")
        ok(counts[-1] <= b["n"], "the last bound holds at most every iteration", b)
        e.wait_tx(accepted(e.post(url, json={"spin": True})), "completed")
        c = sample()
        ok(c["max"] >= 0.055, "a 60 ms step is a long iteration", c)
        ok(c["cpu_max"] >= 0.05 and c["cpu_n"] == c["n"], "spent on the CPU (a busy loop)", c)
        long_ = dict(c["les"])[0.05]
        ok(long_ < c["n"], "it is counted above 50 ms", c)
        ok(c["sum"] - b["sum"] >= 0.055, "its work is in the sum", (b, c))


@test
def fire_and_forget_answers_of_one_commit_go_before_their_steps():
    # five requests arrive while the loop is busy (a 0.4 s step), so one
    # iteration reads them all and one commit makes them durable; each run
    # then takes 150 ms of loop time.  Every 202 of that commit goes out
    # before any of their steps: the last 202 does not wait for the four
    # runs ahead of it (600 ms on the old Lua path).  Both accept paths:
    # the C one (fastpath.c) and the Lua one (HOOKWORK_FAST_ACCEPT=0).
    src = cycle("spin", """
    hw.webhook { name = "in" },
    hw.step { name = "spin", run = function(tx)
      local t = os.clock()
      while os.clock() - t < tx.data.spin do end
    end },
""")
    for env in ({}, {"HOOKWORK_FAST_ACCEPT": "0"}):
        _answers_before_steps(src, env)


def _answers_before_steps(src, env):
    with Engine({"spin.lua": src}, env=env) as e:
        e.start()
        path = e.hook_path("spin", "in")
        conns = [RawConn(e.port) for _ in range(5)]
        try:
            blocker = accepted(e.post(e.hook_url("spin", "in"), json={"spin": 0.4}))
            time.sleep(0.05)  # its step is running now: the loop is busy
            for c in conns:
                c.send(_req(path, '{"spin":0.15}'))
            got = []
            for c in conns:
                rs = c.read_responses(1, timeout=10)
                eq(len(rs), 1, "an answer")
                eq(rs[0].status, 202)
                got.append(time.monotonic())
            # (read in order: each time is when that answer was seen, at the latest)
            spread = max(got) - min(got)
            ok(spread < 0.3, "the 202s of one commit went out together, not one per 150 ms run",
               "%.3f s between the first and the last (%r)" % (spread, env))
            e.wait_tx(blocker, "completed")
        finally:
            for c in conns:
                c.close()


# ------------------------------------------------------------------ HTTP edge cases

def _req(path, body, extra=""):
    body = body.encode() if isinstance(body, str) else body
    return ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
            "Content-Length: %d\r\n\r\n" % (path, extra, len(body))).encode() + body


@test
def http_keep_alive_two_requests():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        path = e.hook_path("simple", "in")
        with RawConn(e.port) as c:
            c.send(_req(path, '{"n":1}'))
            rs = c.read_responses(1)
            eq(len(rs), 1, "first answer")
            eq(rs[0].status, 202)
            ok(not c.closed_by_peer, "connection kept open")
            c.send(_req(path, '{"n":2}'))
            rs = c.read_responses(2)
            eq(len(rs), 2, "second answer on the same connection")
            eq(rs[1].status, 202)
            ids = [r.json["transaction"] for r in rs]
        eq([e.wait_tx(i, "completed")["data"]["n"] for i in ids], [1, 2])


@test
def http_pipelined_answered_in_order():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        path = e.hook_path("simple", "in")
        data = (_req(path, '{"n":1}') + _req("/hooks/" + "N" * 24, "{}") +
                _req(path, '{"n":3}') + http_bytes("GET", path) + _req(path, '{"n":5}'))
        raw = raw_request(e.port, data, responses=5)
        rs, _ = parse_responses(raw)
        eq([r.status for r in rs], [202, 404, 202, 405, 202], "pipelined answers in order")
        ids = [rs[i].json["transaction"] for i in (0, 2, 4)]
        eq([e.wait_tx(i, "completed")["data"]["n"] for i in ids], [1, 3, 5])


@test
def http_chunked_body_accepted():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        path = e.hook_path("simple", "in")
        data = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n" % path).encode()
        data += b"5\r\n{\"a\":\r\n3\r\n 12\r\n1;ext=1\r\n}\r\n0\r\n\r\n"
        with RawConn(e.port) as c:
            c.send(data[:40])
            time.sleep(0.1)
            c.send(data[40:])
            rs = c.read_responses(1)
        ok(rs, "an answer")
        eq(rs[0].status, 202, "chunked body (%r)" % rs[0].body)
        t = e.wait_tx(rs[0].json["transaction"], "completed")
        eq(t["data"]["a"], 12)


@test
def http_too_many_or_too_big_headers_431():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        path = e.hook_path("simple", "in")
        n0 = tx_count(e)
        extra = "".join("X-H-%d: v\r\n" % i for i in range(99))  # + Host + Content-Length = 101
        raw = raw_request(e.port, _req(path, "{}", extra), responses=1)
        rs, _ = parse_responses(raw)
        ok(rs, "an answer to 101 headers", raw[:200])
        eq(rs[0].status, 431, "101 headers")
        raw = raw_request(e.port, _req(path, "{}", "X-Big: %s\r\n" % ("v" * 17000)), responses=1)
        rs, _ = parse_responses(raw)
        ok(rs, "an answer to 17 KB of headers", raw[:200])
        eq(rs[0].status, 431, "headers over 16 KiB")
        eq(tx_count(e), n0)
        extra = "".join("X-H-%d: v\r\n" % i for i in range(50))
        rs, _ = parse_responses(raw_request(e.port, _req(path, "{}", extra), responses=1))
        eq(rs[0].status, 202, "52 headers are fine")


@test
def http_garbage_400_and_closed():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        for junk in (b"GARBAGE\r\n\r\n", b"\x00\x01\x02\xff\xfe nonsense\r\n\r\n",
                     b"POST /hooks/x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                     b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n"):
            with RawConn(e.port) as c:
                c.send(junk)
                buf, closed = c.read_until_closed(5)
            ok(buf.startswith(b"HTTP/1.1 400") or buf.startswith(b"HTTP/1.0 400"), "400 for %r" % junk, buf[:200])
            ok(closed, "connection closed after a malformed request %r" % junk)
        eq(e.admin("GET", "/healthz").status, 200)
        accepted(e.post(e.hook_url("simple", "in"), json={}))


@test
def http_slow_client_408():
    with Engine({"simple.lua": SIMPLE}, env={"HOOKWORK_READ_TIMEOUT": "1"}) as e:
        e.start()
        path = e.hook_path("simple", "in")
        n0 = tx_count(e)
        full = _req(path, '{"a":1}')
        head_end = full.index(b"\r\n\r\n")
        with RawConn(e.port) as c:
            c.send(full[:head_end // 2])
            time.sleep(2)
            buf, closed = c.read_until_closed(3)
        ok(buf.startswith(b"HTTP/1.1 408"), "408 for slow headers", buf[:200])
        ok(closed, "connection closed after 408")
        with RawConn(e.port) as c:
            c.send(full[:-3])
            time.sleep(2)
            buf, closed = c.read_until_closed(3)
        ok(buf.startswith(b"HTTP/1.1 408"), "408 for a slow body", buf[:200])
        ok(closed, "connection closed after 408")
        eq(tx_count(e), n0, "nothing stored")
        accepted(e.post(path, json={}))


# ------------------------------------------------------------------ CLI

@test
def sigterm_exits_0():
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        e.wait_tx(accepted(e.post(e.hook_url("simple", "in"), json={})), "completed")
        eq(e.stop(signal.SIGTERM), 0)
        e.start()
        eq(e.stop(signal.SIGINT), 0, "SIGINT exits 0 too")


@test
def check_command():
    good = SIMPLE
    syntax = """local hw = require "hookwork"
return hw.cycle {
  name = = "x",
  steps = {},
}
"""
    runtime = """local hw = require "hookwork"
error("nope from file")
"""
    badtype = """local hw = require "hookwork"
return hw.cycle {
  name = "t",
  steps = { hw.webhook { name = "in", fields = { a = "strnig" } } },
}
"""
    with Engine({"good.lua": good, "syntax.lua": syntax, "runtime.lua": runtime, "badtype.lua": badtype}) as e:
        d = e.cycles_dir
        r = run_cli(["check", "good.lua"], cwd=d)
        eq(r.returncode, 0, "check of a good file (stderr %r)" % r.stderr)
        r = run_cli(["check", os.path.join(d, "good.lua")])
        eq(r.returncode, 0, "check of a good file by absolute path (stderr %r)" % r.stderr)
        r = run_cli(["check", "syntax.lua"], cwd=d)
        eq(r.returncode, 1, "check of a syntax error")
        ok(re.search(r"syntax\.lua:3: \S", r.stderr), "FILE:LINE: message on stderr", r.stderr)
        r = run_cli(["check", "runtime.lua"], cwd=d)
        eq(r.returncode, 1, "check of a file that raises")
        ok(re.search(r"runtime\.lua:2: .*nope from file", r.stderr), "FILE:LINE: message on stderr", r.stderr)
        r = run_cli(["check", "badtype.lua"], cwd=d)
        eq(r.returncode, 1, "check of a bad field type")
        ok(re.search(r"badtype\.lua:\d+: \S", r.stderr), "FILE:LINE: message on stderr", r.stderr)
        r = run_cli(["check", "good.lua", "syntax.lua"], cwd=d)
        eq(r.returncode, 1, "one bad file among several")
        ok(re.search(r"syntax\.lua:3: \S", r.stderr), "FILE:LINE: message on stderr", r.stderr)


@test
def version_and_help():
    r = run_cli(["--version"])
    eq(r.returncode, 0, "--version exit code (stderr %r)" % r.stderr)
    ok((r.stdout + r.stderr).strip(), "--version prints something")
    r = run_cli(["--help"])
    eq(r.returncode, 0, "--help exit code (stderr %r)" % r.stderr)
    ok("run" in r.stdout + r.stderr, "--help names the run command", r.stdout + r.stderr)


# ------------------------------------------------------------------ crash test

@test
def crash_kill9_every_acknowledged_transaction_completes():
    rec = Recorder()
    rec.route("GET", "/work", delay=0.2, json={"w": 1})
    src = cycle("work", """
    hw.webhook { name = "in", fields = { n = "integer" } },
    hw.step { name = "crunch", run = function(tx)
      local s = 0
      for i = 1, 20000 do s = s + i %% 7 end
      tx.data.sum = s
    end },
    hw.step { name = "remote", run = function(tx)
      tx.data.w = hw.http.get(%s .. "/work").json.w
    end },
    hw.step { name = "done", run = function(tx) tx.data.done = true end },
""" % lua_str(rec.url))
    total, threads = 300, 4
    with rec, Engine({"work.lua": src}) as e:
        e.start()
        path = e.hook_path("work", "in")
        acked = {}
        errors = []
        lock = threading.Lock()

        def sender(k):
            try:
                c = RawConn(e.port, timeout=10)
                mine = list(range(k, total, threads))
                # pipelined in batches, so that acceptance runs ahead of the steps
                for b in range(0, len(mine), 25):
                    batch = mine[b:b + 25]
                    c.send(b"".join(_req(path, json.dumps({"n": i})) for i in batch))
                    rs = c.read_responses(len(batch), timeout=15)
                    c.buf = b""
                    for i, r in zip(batch, rs):
                        if r.status != 202:
                            errors.append((i, r.status))
                            return
                        with lock:
                            acked[r.json["transaction"]] = i
                    if len(rs) != len(batch):
                        errors.append((batch[len(rs)], "no answer"))
                        return
                c.close()
            except Exception as ex:  # noqa
                errors.append((k, repr(ex)))

        ths = [threading.Thread(target=sender, args=(k,)) for k in range(threads)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(30)
        e.kill()
        eq(errors, [], "every request acknowledged before the kill")
        eq(len(acked), total)
        e.start()
        deadline = time.time() + 20
        pending = set(acked)
        while pending and time.time() < deadline:
            listing = {t["id"]: t["state"] for t in e.txs(cycle="work", limit=100000)}
            for i in acked:
                if i not in listing:  # the listing may be capped: ask one by one
                    t = e._get_tx(i)
                    if t is not None:
                        listing[i] = t["state"]
            missing = [i for i in acked if i not in listing]
            ok(not missing, "acknowledged transactions lost after kill -9", missing[:5], len(missing))
            pending = {i for i in acked if listing[i] != "completed"}
            bad = {i: listing[i] for i in acked if listing[i] == "failed"}
            ok(not bad, "transactions failed after recovery", list(bad.items())[:3])
            if pending:
                time.sleep(0.2)
        ok(not pending, "all acknowledged transactions completed within 20 s", len(pending), list(pending)[:3])
        for tid in list(acked)[:: total // 10]:
            t = e.tx(tid)
            eq(t["data"].get("n"), acked[tid])
            eq(t["data"].get("done"), True)
            eq(t["data"].get("w"), 1)
            ok(isinstance(t["data"].get("sum"), int))


@test
def sandbox_cannot_reach_engine_tables():
    """A cycle must not change what the engine or another cycle sees: the
    string metatable is hidden and library tables are per-file copies."""
    evil = cycle("evil", """
    hw.webhook { name = "in" },
    hw.step { name = "poke", run = function(tx)
      tx.data.mt = getmetatable("") == nil
      string.format = function() return "pwned" end
      table.concat = nil
    end },
""")
    good = cycle("good", """
    hw.webhook { name = "in" },
    hw.step { name = "use", run = function(tx)
      tx.data.s = string.format("%d-%s", 7, table.concat({ "a", "b" }))
    end },
""")
    with Engine({"evil.lua": evil, "good.lua": good}) as e:
        e.start()
        t = e.wait_tx(accepted(e.post(e.hook_url("evil", "in"), json={})), {"completed", "failed"})
        eq(t["data"].get("mt"), True, "string metatable hidden")
        t = e.wait_tx(accepted(e.post(e.hook_url("good", "in"), json={})), {"completed", "failed"})
        eq(t["state"], "completed")
        eq(t["data"].get("s"), "7-ab", "another cycle's string/table are untouched")
        # the engine itself still answers JSON correctly
        r = e.post(e.hook_url("good", "in"), json={"x": 1})
        accepted(r)


@test
def crash_after_a_finished_call_does_not_repeat_it():
    """kill -9 during a long pure step that follows a completed outbound
    call: after restart the run goes on from that step, so the call is not
    sent again, and the step after it is sent once."""
    rec = Recorder()
    src = cycle("chain", """
    hw.webhook { name = "in" },
    hw.request { name = "a", method = "POST", url = %s .. "/a", json = { step = "a" } },
    hw.step { name = "b", run = function(tx)
      local t0 = os.time()
      while os.time() - t0 < 2 do end
      tx.data.b = true
    end },
    hw.request { name = "c", method = "POST", url = %s .. "/c", json = { step = "c" } },
""" % (lua_str(rec.url), lua_str(rec.url)))
    with rec, Engine({"chain.lua": src}, env={"HOOKWORK_STEP_BUDGET": "100000000000"}) as e:
        e.start()
        txid = accepted(e.post(e.hook_url("chain", "in"), json={"k": 1}))
        rec.wait_for("POST", "/a", count=1, timeout=10)
        time.sleep(0.5)  # inside step b, which keeps the loop busy
        e.kill()
        eq(len(rec.find("POST", "/c")), 0, "c had not run before the kill")
        e.start()
        t = e.wait_tx(txid, "completed", timeout=15)
        eq(t["data"].get("b"), True)
        eq(len(rec.find("POST", "/a")), 1, "the finished call a is not repeated")
        eq(len(rec.find("POST", "/c")), 1, "c runs once after the restart")


@test
def bare_yield_in_a_step_fails_only_that_transaction():
    src = cycle("y", """
    hw.webhook { name = "in" },
    hw.step { name = "yielder", run = function(tx)
      local co = coroutine.wrap(function() coroutine.yield(1); return 2 end)
      tx.data.inner = co()          -- a coroutine the step made may yield
      coroutine.yield()             -- the run's own coroutine may not
    end },
""")
    with Engine({"y.lua": src}) as e:
        e.start()
        t = e.wait_tx(accepted(e.post(e.hook_url("y", "in"), json={})), {"failed", "completed"}, timeout=5)
        eq(t["state"], "failed")
        contains(t["history"][-1]["error"], "coroutine.yield")
        t = e.wait_tx(accepted(e.post(e.hook_url("y", "in"), json={})), {"failed", "completed"}, timeout=5)
        eq(t["state"], "failed", "the engine keeps serving")
