"""Issue 10/11, JSON fidelity and what outside callers see. Black-box:
exact numbers and [] end to end (inbound -> tx.data -> store -> admin ->
outbound json), strict JSON at the door, data a step cannot store,
sanitized 500 bodies, error objects whose __tostring raises, and respond
headers that would break the answer's framing."""

import json
import time

from lib import (cycle, Engine, Recorder, RawConn, test, eq, ok, contains, wait_until, lua_str)


# The numbers and shapes that lua-cjson changed: 14 significant digits, every
# number a double, [] read as {}.
BODY = ('{"id": "A1", "big": 9007199254740993, "n15": 123456789012345, '
        '"min": -9223372036854775808, "max": 9223372036854775807, "ratio": 0.1, '
        '"third": 0.30000000000000004, "tiny": 1e-300, "sub": 5e-324, "float": 2.0, '
        '"empty": [], "obj": {}, "nested": {"lists": [[], {}, [1, []]]}}')
EXPECT = json.loads(BODY)


def numbers_and_shapes(v, where):
    """v holds every field of BODY unchanged (Python's json keeps ints exact)."""
    for k, want in EXPECT.items():
        eq(v.get(k), want, "%s: %s" % (where, k))
        eq(type(v.get(k)), type(want), "%s: type of %s" % (where, k))


@test
def exact_numbers_and_empty_arrays_end_to_end():
    with Recorder() as rec, Engine() as e:
        e.write("fid.lua", cycle("fid", """
    hw.webhook { name = "in" },
    hw.request { name = "first", method = "POST", url = %s,
                 json = function(tx) local d = hw.json.decode(hw.json.encode(tx.data)); return d end },
    hw.step { name = "drop", run = function(tx) tx.data.first = nil end },
    hw.webhook { name = "more", match = "id" },
    hw.request { name = "second", method = "POST", url = %s,
                 json = function(tx) return tx.data end },
    hw.step { name = "drop2", run = function(tx) tx.data.second = nil; tx.data.more = nil end },
""" % (lua_str(rec.url + "/first"), lua_str(rec.url + "/second"))))
        e.start()
        r = e.post(e.hook_url("fid", "in"), body=BODY.encode(),
                   headers={"Content-Type": "application/json"})
        eq(r.status, 202, r.text)
        tid = r.json["transaction"]
        first = rec.wait_for("POST", "/first")[0]
        numbers_and_shapes(first.json, "outbound json before the store")
        ok(b"1.2345678901234e+14" not in first.body, "no 14-digit rounding", first.body)
        t = e.wait_tx(tid, "waiting")
        numbers_and_shapes(t["data"], "admin output of the stored data")
        # the resume starts from the stored snapshot: decoded from the store
        r = e.post(e.hook_url("fid", "more"), json={"id": "A1", "more": True})
        eq(r.status, 202, r.text)
        second = rec.wait_for("POST", "/second")[0]
        numbers_and_shapes(second.json, "outbound json after the store")
        eq(second.json.get("more"), True)
        ok(b'"empty":[]' in second.body and b'"obj":{}' in second.body, "[] and {} kept", second.body)
        t = wait_until(lambda: (lambda x: x if len(x["history"]) >= 7 else None)(e.tx(tid)),
                       msg="second run recorded")
        numbers_and_shapes(t["data"], "admin output after the resume")
        # after a restart the store still holds the same values
        e.restart()
        numbers_and_shapes(e.tx(tid)["data"], "admin output after a restart")


@test
def synchronous_answer_keeps_numbers_and_arrays():
    with Engine({"echo.lua": cycle("echo", """
    hw.webhook { name = "in" },
    hw.step { name = "add", run = function(tx)
      tx.data.sum = tx.data.big + 2
      tx.data.marked = hw.json.array()
      tx.data.plain = {}
    end },
    hw.respond { name = "reply", body = function(tx) return tx.data end },
""")}) as e:
        e.start()
        r = e.post(e.hook_url("echo", "in"), body=BODY.encode(),
                   headers={"Content-Type": "application/json"})
        eq(r.status, 200, r.text)
        numbers_and_shapes(r.json, "synchronous answer")
        eq(r.json["sum"], 9007199254740995, "integer arithmetic stays exact")
        eq(r.json["marked"], [], "hw.json.array() is []")
        eq(r.json["plain"], {}, "an unmarked empty table is {}")


@test
def not_json_is_a_400_that_names_it():
    with Engine({"strict.lua": cycle("strict", """
    hw.webhook { name = "in" },
"""), "typed.lua": cycle("typed", """
    hw.webhook { name = "in", fields = { times = "integer" } },
""")}) as e:
        e.start()
        url = e.hook_url("strict", "in")
        cases = [
            ('{"n": 0x10}', "invalid number '0x10'"),
            ('{"n": NaN}', "invalid value 'NaN'"),
            ('{"n": Infinity}', "invalid value 'Infinity'"),
            ('{"n": -Infinity}', "invalid number '-Infinity'"),
            ('{"times": 1e999}', "number out of range: 1e999"),
            ('{"n": 01}', "leading zeros"),
            ('{"n": [1,]}', "trailing comma"),
            ('{"n": "a\x01b"}', "control character"),
            ('{"n": 1} x', "unexpected data after the JSON value"),
        ]
        for body, reason in cases:
            r = e.post(url, body=body.encode(), headers={"Content-Type": "application/json"})
            eq(r.status, 400, "%r -> %s %r" % (body, r.status, r.body))
            contains(r.json["error"], "malformed JSON body: " + reason)
        r = e.post(url, body=b'{"s": "\xff"}', headers={"Content-Type": "application/json"})
        eq(r.status, 400, r.text)
        contains(r.json["error"], "invalid UTF-8")
        r = e.post(e.hook_url("typed", "in"), body=b'{"times": 1e999}',
                   headers={"Content-Type": "application/json"})
        eq(r.status, 400, r.text)
        contains(r.json["error"], "1e999")
        r = e.post(e.hook_url("typed", "in"), body=b'{"times": 1e300}',
                   headers={"Content-Type": "application/json"})
        eq(r.status, 400, r.text)
        eq(r.json["error"], "field 'times': expected integer")
        eq(e.txs(), [], "nothing stored for a rejected body")


UNSTORABLE = [
    ("ratio", "tx.data.ratio = 1/0", "tx.data.ratio: cannot store inf"),
    ("nan", "tx.data.x = { 1, 0/0 }", "tx.data.x[2]: cannot store nan"),
    ("fn", "tx.data.cb = function() end", "tx.data.cb: cannot store a function"),
    ("loop", "local t = {}; t.self = t; tx.data.t = t", "tx.data.t.self: cannot store a table that contains itself"),
    ("deep", "local t = {}; tx.data.d = t; for i = 1, 250 do t.n = {}; t = t.n end",
     "nesting deeper than 200"),
]


@test
def unstorable_data_fails_the_step_and_never_reruns():
    with Recorder() as rec, Engine() as e:
        for name, code, _ in UNSTORABLE:
            e.write(name + ".lua", cycle(name, """
    hw.webhook { name = "in" },
    hw.request { name = "call", method = "POST", url = %s, json = { once = true } },
    hw.step { name = "bad", run = function(tx) %s end },
    hw.step { name = "after", run = function(tx) tx.data.after = true end },
""" % (lua_str(rec.url + "/" + name), code)))
        e.start()
        ids = {}
        for name, _, _ in UNSTORABLE:
            r = e.post(e.hook_url(name, "in"), json={"k": name})
            eq(r.status, 202, r.text)
            ids[name] = r.json["transaction"]
        for name, _, message in UNSTORABLE:
            t = e.wait_tx(ids[name], "failed")
            eq(t["step"], "bad", name)
            errors = [h.get("error") for h in t["history"] if h.get("status") == "failed"]
            eq(len(errors), 1, "%s: one failed step %s" % (name, t["history"]))
            contains(errors[0], message)
            eq(t["data"].get("k"), name, "the data before the failing step is kept")
            ok("after" not in t["data"], "the run stopped at the failing step", t["data"])
        e.restart()
        time.sleep(1.0)
        for name, _, _ in UNSTORABLE:
            eq(e.tx(ids[name])["state"], "failed", name + " after a restart")
            eq(len(rec.find("POST", "/" + name)), 1, name + ": the outbound call ran once, not again at restart")


@test
def unstorable_data_in_a_synchronous_run_is_a_500_naming_the_path():
    with Engine({"s.lua": cycle("s", """
    hw.webhook { name = "in" },
    hw.step { name = "calc", run = function(tx) tx.data.ratio = tx.data.a / tx.data.b end },
    hw.respond { name = "reply", body = { ok = true } },
"""), "b.lua": cycle("b", """
    hw.webhook { name = "in" },
    hw.respond { name = "reply", body = function(tx) return { when = os.time, n = 1 } end },
""")}) as e:
        e.start()
        r = e.post(e.hook_url("s", "in"), json={"a": 1, "b": 0})
        eq(r.status, 500, r.text)
        eq(r.json, {"error": "step 'calc' failed: tx.data.ratio: cannot store inf",
                    "transaction": r.json.get("transaction")})
        eq(e.wait_tx(r.json["transaction"], "failed")["step"], "calc")
        r = e.post(e.hook_url("b", "in"), json={})
        eq(r.status, 500, r.text)
        eq(r.json["error"], "step 'reply' failed: body.when: cannot store a function")


@test
def error_bodies_carry_no_paths_or_positions():
    with Engine({"boom.lua": cycle("boom", """
    hw.webhook { name = "in" },
    hw.step { name = "enrich", run = function(tx)
      if tx.data.kind == "plain" then error("kaboom 7") end
      if tx.data.kind == "nested" then
        local ok, err = pcall(error, "inner")
        error(err)
      end
      local customer = nil
      return customer.name
    end },
    hw.respond { name = "reply", body = { ok = true } },
""")}) as e:
        e.start()
        url = e.hook_url("boom", "in")
        for kind, message in [("plain", "kaboom 7"), ("nested", "inner"),
                              ("nil", "attempt to index a nil value (local 'customer')")]:
            r = e.post(url, json={"kind": kind})
            eq(r.status, 500, r.text)
            eq(r.json, {"error": "step 'enrich' failed: " + message,
                        "transaction": r.json.get("transaction")}, kind)
            ok(".lua" not in r.text and "/" not in r.json["error"], "no file path", r.text)
            t = e.wait_tx(r.json["transaction"], "failed")
            full = [h["error"] for h in t["history"] if h.get("error")][0]
            contains(full, "boom.lua:")   # the position stays in the history
            contains(full, message)
        contains(e.log(), "kaboom 7")


@test
def error_object_whose_tostring_raises_still_fails_the_transaction():
    with Engine({"obj.lua": cycle("obj", """
    hw.webhook { name = "in" },
    hw.step { name = "throw", run = function(tx)
      local bad = setmetatable({}, { __tostring = function() error("no text for you") end })
      if tx.data.kind == "deeper" then
        local worse = setmetatable({}, { __tostring = function() error(bad) end })
        error(worse)
      elseif tx.data.kind == "message" then
        error({ message = bad })
      elseif tx.data.kind == "index" then
        error(setmetatable({}, { __index = function() error(bad) end }))
      end
      error(bad)
    end },
    hw.respond { name = "reply", body = { ok = true } },
""")}) as e:
        e.start()
        url = e.hook_url("obj", "in")
        for kind in ("plain", "deeper", "message", "index"):
            r = e.post(url, json={"kind": kind}, timeout=15)
            eq(r.status, 500, "%s: %s %r" % (kind, r.status, r.body))
            contains(r.json["error"], "step 'throw' failed: ")
            t = e.wait_tx(r.json["transaction"], "failed", timeout=5)
            eq(t["step"], "throw")
        eq(e.txs(state="running"), [], "nothing left running")


@test
def respond_cannot_set_framing_headers():
    with Engine({"hdr.lua": cycle("hdr", """
    hw.webhook { name = "in" },
    hw.respond { name = "reply", status = 200, body = "hello",
                 headers = function(tx) return { [tx.data.name] = tx.data.value } end },
""")}) as e:
        e.start()
        url = e.hook_url("hdr", "in")
        for name, value in [("Content-Length", "5"), ("content-length", "0"),
                            ("Transfer-Encoding", "chunked"), ("Connection", "close")]:
            r = e.post(url, json={"name": name, "value": value})
            eq(r.status, 500, "%s -> %s %r" % (name, r.status, r.body))
            contains(r.json["error"], "step 'reply' failed: ")
            contains(r.json["error"], "'%s'" % name)
            eq(e.wait_tx(r.json["transaction"], "failed")["step"], "reply")
        for name, value in [("X-Ok", "a\r\nContent-Length: 0"), ("X-Ok", "a\nb"), ("X-Ok", "a\rb"),
                            ("X-Bad\r\nInjected", "1"), ("Bad Name", "1"), ("", "1")]:
            r = e.post(url, json={"name": name, "value": value})
            eq(r.status, 500, "%r: %s %r" % (name, r.status, r.body))
            contains(r.json["error"], "step 'reply' failed: ")
            ok("\r" not in r.text and "\n" not in r.text.strip(), "nothing injected", r.text)
        r = e.post(url, json={"name": "X-Fine", "value": "yes"})
        eq(r.status, 200, r.text)
        eq(r.headers.get("x-fine"), "yes")
        eq(r.body, b"hello")
        # one answer per request on a raw connection: nothing smuggled
        c = RawConn(e.port)
        body = json.dumps({"name": "X-Ok", "value": "a\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK"})
        path = e.hook_path("hdr", "in")
        c.send("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n%s" % (path, len(body), body))
        resps = c.read_responses(2, timeout=1.5)
        eq([x.status for x in resps], [500], "one answer, nothing smuggled")
        c.close()


@test
def outbound_header_values_with_cr_or_lf_fail_the_step():
    with Recorder() as rec, Engine() as e:
        e.write("out.lua", cycle("out", """
    hw.webhook { name = "in" },
    hw.request { name = "call", method = "POST", url = %s, json = { a = 1 },
                 headers = function(tx) return { [tx.data.name] = tx.data.value } end },
""" % lua_str(rec.url + "/h")))
        e.start()
        url = e.hook_url("out", "in")
        ids = []
        for name, value in [("X-A", "v\r\nX-Injected: 1"), ("X-A", "v\nw"), ("X-B\r\nX-Injected", "1")]:
            r = e.post(url, json={"name": name, "value": value})
            eq(r.status, 202, r.text)
            ids.append(r.json["transaction"])
        for tid in ids:
            t = e.wait_tx(tid, "failed")
            eq(t["step"], "call")
            err = [h["error"] for h in t["history"] if h.get("error")][0]
            contains(err, "header")
        r = e.post(url, json={"name": "X-A", "value": "fine"})
        e.wait_tx(r.json["transaction"], "completed")
        got = rec.wait_for("POST", "/h")
        eq(len(got), 1, "only the good call went out")
        eq(got[0].headers.get("x-a"), "fine")
        ok("x-injected" not in got[0].headers, "nothing injected", got[0].headers)


@test
def text_that_is_not_utf8_never_leaves_the_engine():
    """Bytes that are not UTF-8 in tx.data (from a form field, or made by a
    step) go out as U+FFFD: answers, outbound json and the admin API are
    always valid UTF-8, so always valid JSON."""
    with Recorder() as rec, Engine() as e:
        e.write("bytes.lua", cycle("bytes", """
    hw.webhook { name = "in", fields = { name = "string" } },
    hw.step { name = "mix", run = function(tx) tx.data.bin = "a\\255b" .. tx.data.name end },
    hw.request { name = "send", method = "POST", url = %s,
                 json = function(tx) return { bin = tx.data.bin } end },
    hw.respond { name = "reply", body = function(tx) return { bin = tx.data.bin } end },
""" % lua_str(rec.url + "/u")))
        e.start()
        r = e.post(e.hook_url("bytes", "in"), body=b"name=%FF%FE",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        eq(r.status, 200, r.text)
        want = "a\ufffdb\ufffd\ufffd"
        eq(json.loads(r.body.decode("utf-8")), {"bin": want}, "the answer is valid UTF-8")
        sent = rec.wait_for("POST", "/u")[0]
        eq(json.loads(sent.body.decode("utf-8")), {"bin": want}, "outbound json is valid UTF-8")
        tid = e.txs(cycle="bytes")[0]["id"]
        e.wait_tx(tid, "completed")
        raw = e.admin("GET", "/api/transactions/%s" % tid).body
        eq(json.loads(raw.decode("utf-8"))["data"]["bin"], want, "admin output is valid UTF-8")
        raw = e.admin("GET", "/api/transactions?cycle=bytes").body
        raw.decode("utf-8")


@test
def binary_request_body_survives_recovery_byte_for_byte():
    """The stored request is JSON; a body that is not UTF-8 is kept as
    base64 there, so tx.request.body after a kill -9 is the same bytes."""
    raw = b"\x00\xff\xfe binary \x80\xc3(" + bytes(range(256))
    with Recorder() as rec, Engine() as e:
        rec.route("POST", "/slow", status=200, json={"ok": True}, delay=30)
        e.write("bin.lua", cycle("bin", """
    hw.webhook { name = "in" },
    hw.request { name = "slow", method = "POST", url = %s, body = "x", timeout = 60 },
    hw.request { name = "echo", method = "POST", url = %s,
                 headers = { ["Content-Type"] = "application/octet-stream" },
                 body = function(tx) return tx.request.body end },
""" % (lua_str(rec.url + "/slow"), lua_str(rec.url + "/body"))))
        e.start()
        r = e.post(e.hook_url("bin", "in"), body=raw, headers={"Content-Type": "application/octet-stream"})
        eq(r.status, 202, r.text)
        rec.wait_for("POST", "/slow")
        e.kill()
        rec.route("POST", "/slow", status=200, json={"ok": True})
        e.start()
        got = rec.wait_for("POST", "/body", timeout=20)
        eq(got[0].body, raw, "tx.request.body after recovery")
        e.wait_tx(r.json["transaction"], "completed")


@test
def outbound_json_that_is_not_utf8_still_reads_as_json():
    """A remote system answering Latin-1 inside JSON: r.json is read, the
    bad bytes as U+FFFD, and nothing invalid reaches the store or admin."""
    with Recorder() as rec, Engine() as e:
        rec.route("GET", "/latin", status=200, body=b'{"name":"caf\xe9","n":12345678901234567}',
                  headers={"Content-Type": "application/json"})
        e.write("lat.lua", cycle("lat", """
    hw.webhook { name = "in" },
    hw.step { name = "get", run = function(tx)
      local r = hw.http.get(%s)
      tx.data.name, tx.data.n = r.json.name, r.json.n
    end },
""" % lua_str(rec.url + "/latin")))
        e.start()
        r = e.post(e.hook_url("lat", "in"), json={})
        t = e.wait_tx(r.json["transaction"], "completed")
        eq(t["data"]["name"], "caf\ufffd")
        eq(t["data"]["n"], 12345678901234567)
