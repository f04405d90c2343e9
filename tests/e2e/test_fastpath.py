"""Issue 14, the accept path in C (core/fastpath.c): which requests it takes
(hookwork_accept_path_total{path="c"|"lua"}, counted per request), and that
it answers and stores exactly what the Lua path does: the same requests go
to an engine with the C path and to one with HOOKWORK_FAST_ACCEPT=0, and
every answer (status, headers, body) and every stored transaction (data,
request) must match.  Also: a commit that fails after the C path wrote
gives the Lua path's 503; kill -9 after the 202s loses nothing.
"""

import gzip
import hashlib
import hmac
import json
import os
import re
import threading
import time
import zlib

from lib import test, Engine, eq, ok, wait_until, on_postgres
from storefault import StoreFault

FA_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "fa",
  steps = {
    hw.webhook { name = "in", methods = { "POST", "PUT" },
                 fields = { order_id = "string", amount = "number", qty = "integer?",
                            ["customer.id"] = "string?", ["customer.vip"] = "boolean?",
                            tags = "array?", meta = "object?", note = "any?" } },
    hw.step { name = "touch", run = function(tx) tx.data.seen = true end },
  },
}
"""

ALL_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "all",
  steps = {
    hw.webhook { name = "in" },
    hw.step { name = "touch", run = function(tx) tx.data.seen = true end },
  },
}
"""

STOPPED_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "stopme",
  steps = { hw.webhook { name = "in" }, hw.step { name = "s", run = function(tx) end } },
}
"""

GUARD_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "guard",
  steps = { hw.webhook { name = "in", ip_filtered = true },
            hw.step { name = "s", run = function(tx) end } },
}
"""

GH_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "gh",
  steps = {
    hw.webhook { name = "in", fields = { n = "integer" },
                 verify = hw.verify.github { secret = hw.secret("FA_GH_SECRET") } },
    hw.step { name = "s", run = function(tx) end },
  },
}
"""

FILES = {"fa.lua": FA_LUA, "all.lua": ALL_LUA, "stopme.lua": STOPPED_LUA,
         "guard.lua": GUARD_LUA, "gh.lua": GH_LUA}
ENV = {"FA_GH_SECRET": "gh-s3cret"}


def gh(body, secret="gh-s3cret"):
    sig = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    return dict(JSON, **{"X-Hub-Signature-256": "sha256=" + sig})

JSON = {"Content-Type": "application/json"}


def nested(depth):
    return '{"order_id":"d","amount":1,"meta":' + '{"a":' * depth + '1' + '}' * depth + '}'


# (name, cycle, method, suffix, headers, body, expected status, path taken)
CASES = [
    ("plain", "fa", "POST", "", JSON, '{"order_id":"A1","amount":12.5}', 202, "c"),
    ("nested", "fa", "POST", "", JSON,
     '{"order_id":"A2","amount":1,"qty":3,"customer":{"id":"c1","vip":true,"x":0},'
     '"tags":[1,"2",{"t":null}],"meta":{"a":null},"junk":"x","note":null}', 202, "c"),
    ("put_allowed", "fa", "PUT", "", JSON, '{"order_id":"P","amount":0}', 202, "c"),
    ("integer_1e3", "fa", "POST", "", JSON, '{"order_id":"i","amount":1,"qty":1e3}', 202, "c"),
    ("integer_float_form", "fa", "POST", "", JSON, '{"order_id":"i","amount":1,"qty":7.0}', 202, "c"),
    ("integer_minus_zero", "fa", "POST", "", JSON, '{"order_id":"i","amount":-0,"qty":-0}', 202, "c"),
    ("integer_big_exact", "fa", "POST", "", JSON,
     '{"order_id":"i","amount":1,"qty":9007199254740993}', 202, "c"),
    ("integer_past_int64", "fa", "POST", "", JSON,
     '{"order_id":"i","amount":1,"qty":12345678901234567890}', 400, "lua"),
    ("integer_fraction", "fa", "POST", "", JSON, '{"order_id":"i","amount":1,"qty":1.5}', 400, "lua"),
    ("integer_as_string", "fa", "POST", "", JSON, '{"order_id":"i","amount":1,"qty":"3"}', 400, "lua"),
    ("missing_field", "fa", "POST", "", JSON, '{"order_id":"m"}', 400, "lua"),
    ("null_field", "fa", "POST", "", JSON, '{"order_id":"m","amount":null}', 400, "lua"),
    ("wrong_type", "fa", "POST", "", JSON, '{"order_id":5,"amount":1}', 400, "lua"),
    ("nested_wrong_type", "fa", "POST", "", JSON,
     '{"order_id":"w","amount":1,"customer":{"vip":"yes"}}', 400, "lua"),
    ("nested_not_object", "fa", "POST", "", JSON,
     '{"order_id":"w","amount":1,"customer":[1]}', 202, "c"),
    ("bad_json", "fa", "POST", "", JSON, '{"order_id":"b",', 400, "lua"),
    ("trailing_garbage", "fa", "POST", "", JSON, '{"order_id":"b","amount":1} x', 400, "lua"),
    ("number_overflow", "fa", "POST", "", JSON, '{"order_id":"o","amount":1e999}', 400, "lua"),
    ("leading_zero", "fa", "POST", "", JSON, '{"order_id":"o","amount":01}', 400, "lua"),
    ("bad_escape", "fa", "POST", "", JSON, '{"order_id":"\\q","amount":1}', 400, "lua"),
    ("control_char", "fa", "POST", "", JSON, '{"order_id":"a\x01","amount":1}', 400, "lua"),
    ("too_deep", "fa", "POST", "", JSON, nested(200), 400, "lua"),
    ("deep_ok", "fa", "POST", "", JSON, nested(150), 202, "c"),
    ("array_body", "fa", "POST", "", JSON, '[{"order_id":"a","amount":1}]', 400, "lua"),
    ("empty_body", "fa", "POST", "", JSON, '', 400, "lua"),
    ("sniffed_text_plain", "fa", "POST", "", {"Content-Type": "text/plain"},
     ' {"order_id":"t","amount":2}', 202, "c"),
    ("unlabelled", "fa", "POST", "", {}, '{"order_id":"u","amount":2}', 202, "c"),
    ("json_as_form", "fa", "POST", "", {"Content-Type": "application/x-www-form-urlencoded"},
     '{"order_id":"f","amount":2}', 202, "c"),
    ("vendor_json", "fa", "POST", "", {"Content-Type": "Application/Vnd.X+JSON; charset=utf-8"},
     '{"order_id":"v","amount":2}', 202, "c"),
    ("bom", "fa", "POST", "", JSON, '\ufeff{"order_id":"bom","amount":2}', 202, "c"),
    ("unicode", "fa", "POST", "", JSON,
     '{"order_id":"\u00e9\U0001f600\\u00e9\\ud83d\\ude00\\ud800","amount":2}', 202, "c"),
    ("invalid_utf8", "fa", "POST", "", JSON, b'{"order_id":"\xff","amount":2}', 400, "lua"),
    ("xml", "fa", "POST", "", {"Content-Type": "application/xml"}, '<a/>', 415, "lua"),
    ("gzip", "fa", "POST", "", dict(JSON, **{"Content-Encoding": "gzip"}),
     gzip.compress(b'{"order_id":"g","amount":3}'), 202, "c"),
    ("deflate", "fa", "POST", "", dict(JSON, **{"Content-Encoding": "Deflate"}),
     zlib.compress(b'{"order_id":"z","amount":3}'), 202, "c"),
    ("bad_gzip", "fa", "POST", "", dict(JSON, **{"Content-Encoding": "gzip"}),
     b"not gzip at all", 400, "lua"),
    ("brotli", "fa", "POST", "", dict(JSON, **{"Content-Encoding": "br"}), b"x", 415, "lua"),
    ("wrong_method", "fa", "GET", "", {}, None, 405, "c_rejected"),
    ("forged_token", "fa", "POST", "x", JSON, '{"order_id":"A1","amount":1}', 404, "c_rejected"),
    ("trailing_slash", "fa", "POST", "/", JSON, '{"order_id":"s","amount":1}', 202, "c"),
    ("query_string", "fa", "POST", "?a=1&b=%20x+y&&=z&c&a=2&%41%4a=%2B%zz%4", JSON,
     '{"order_id":"q","amount":1}', 202, "c"),
    ("query_not_utf8", "fa", "POST", "?a=%FF", JSON, '{"order_id":"q","amount":1}', 202, "lua"),
    ("duplicate_key", "fa", "POST", "", JSON,
     '{"order_id":"x","order_id":"y","amount":1}', 202, "c"),
    ("escaped_key", "fa", "POST", "", JSON, '{"order_\\u0069d":"e","amount":2}', 202, "lua"),
    ("all_members", "all", "POST", "", JSON,
     '{"a":1,"b":null,"c":{"d":[1,2,null]},"e":"\\"q\\"","f":1.50}', 202, "c"),
    ("all_dup_last_null", "all", "POST", "", JSON, '{"a":1,"a":null,"z":2}', 202, "lua"),
    ("all_empty_body", "all", "POST", "", JSON, '', 202, "lua"),
    ("all_scalar", "all", "POST", "", JSON, '42', 202, "lua"),
    ("verified", "gh", "POST", "", gh('{"n":1}'), '{"n":1}', 202, "c"),
    ("verified_gzip", "gh", "POST", "", dict(gh('x'), **{"X-Hub-Signature-256": "sha256=" + hmac.new(
        b"gh-s3cret", gzip.compress(b'{"n":2}', mtime=0), hashlib.sha256).hexdigest(),
        "Content-Encoding": "gzip"}), gzip.compress(b'{"n":2}', mtime=0), 202, "c"),
    ("bad_signature", "gh", "POST", "", gh('{"n":1}', "wrong"), '{"n":1}', 401, "lua"),
    ("no_signature", "gh", "POST", "", JSON, '{"n":1}', 401, "lua"),
    ("verified_bad_field", "gh", "POST", "", gh('{"n":"x"}'), '{"n":"x"}', 400, "lua"),
    ("stopped_cycle", "stopme", "POST", "", JSON, '{"a":1}', 503, "c_rejected"),
    ("ip_filtered", "guard", "POST", "", JSON, '{"a":1}', 403, "c_rejected"),
]


def counts(e):
    """(accepted in C, handed to Lua, rejected in C)"""
    got = {}
    for line in e.metrics().splitlines():
        m = re.match(r'hookwork_accept_path_total\{path="(\w+)"\} (\d+)', line)
        if m:
            got[m.group(1)] = int(m.group(2))
    return got.get("c", 0), got.get("lua", 0), got.get("c_rejected", 0)


def path_taken(before, after):
    d = tuple(a - b for a, b in zip(after, before))
    return {(1, 0, 0): "c", (0, 1, 0): "lua", (0, 0, 1): "c_rejected"}.get(d, "?%s" % (d,))


def send(e, urls, case):
    name, cyc, method, suffix, headers, body, _, _ = case
    return e.post(urls[cyc] + suffix, body=body, headers=headers, method=method)


def answer_of(r, token_map):
    h = {k: v for k, v in r.headers.items() if k in ("content-type", "retry-after", "allow",
                                                      "www-authenticate", "location")}
    return r.status, h, r.body


def stored(e, tx, token):
    t = e.tx(tx)
    req = t["request"]
    req.pop("received", None)
    req["path"] = req["path"].replace(token, "TOKEN")
    req["headers"].pop("host", None)  # (each engine its own port)
    return {"state": t["state"], "data": t["data"], "request": req}


def run_cases(e):
    urls = {c: e.hook_url(c, "in") for c in ("fa", "all", "stopme", "guard", "gh")}
    e.stop_cycle("stopme")
    r = e.admin("PUT", "/api/connectors/default", json={"allowed_ips": ["127.0.0.2"]})
    eq(r.status // 100, 2, "allowed_ips set")
    out = []
    for case in CASES:
        before = counts(e)
        r = send(e, urls, case)
        after = counts(e)
        out.append((case[0], r, path_taken(before, after)))
    return urls, out


@test
def c_path_and_lua_path_answer_and_store_the_same():
    fast = Engine(FILES, env=ENV)
    slow = Engine(FILES, env=dict(ENV, HOOKWORK_FAST_ACCEPT="0"))
    with fast, slow:
        fast.start()
        slow.start()
        furls, fres = run_cases(fast)
        surls, sres = run_cases(slow)
        eq(counts(slow)[0], 0, "HOOKWORK_FAST_ACCEPT=0: nothing on the C path")
        accepted = []
        for case, (name, fr, taken), (_, sr, _) in zip(CASES, fres, sres):
            eq(fr.status, case[6], "%s: status (%s)" % (name, fr.body[:200]))
            eq(taken, case[7], "%s: accept path" % name)
            eq(answer_of(fr, None), answer_of(sr, None), "%s: same answer on both paths" % name)
            if fr.status == 202:
                accepted.append((name, fr.json["transaction"], case[1]))
        ftok = {c: u.rsplit("/", 1)[1] for c, u in furls.items()}
        stok = {c: u.rsplit("/", 1)[1] for c, u in surls.items()}
        for name, tx, cyc in accepted:
            fast.wait_tx(tx, "completed")
            slow.wait_tx(tx, "completed")
            eq(stored(fast, tx, ftok[cyc]), stored(slow, tx, stok[cyc]), "%s: same transaction stored" % name)
        def answers(e):
            return sorted(l for l in e.metrics().splitlines()
                          if l.startswith("hookwork_webhook_requests_total{")
                          or l.startswith("hookwork_rejected_requests_total{"))
        eq(answers(fast), answers(slow), "answers and rejections counted alike")

        def rejections(e):
            r = e.admin("GET", "/api/rejections?limit=1000")
            eq(r.status, 200)
            return [{k: v for k, v in x.items() if k != "time"} for x in r.json]
        eq(rejections(fast), rejections(slow), "the same rejection list")
        log = [l.split("] ", 1)[1] for l in fast.log().splitlines() if "[reject]" in l]
        slog = [l.split("] ", 1)[1] for l in slow.log().splitlines() if "[reject]" in l]
        eq(log, slog, "the same rejection log lines")
        d = fast.tx([t for n, t, _ in accepted if n == "integer_1e3"][0])["data"]
        eq(d["qty"], 1000, "1e3 stored as the integer 1000")
        d = fast.tx([t for n, t, _ in accepted if n == "all_members"][0])["data"]
        eq(d, {"a": 1, "c": {"d": [1, 2, None]}, "e": '"q"', "f": 1.5, "seen": True})


@test
def c_path_follows_start_stop_put_and_reload():
    with Engine({"fa.lua": FA_LUA, "guard.lua": GUARD_LUA}) as e:
        e.start()
        url = e.hook_url("fa", "in")
        good = '{"order_id":"A","amount":1}'
        eq(e.post(url, body=good, headers=JSON).status, 202)
        e.stop_cycle("fa")
        before = counts(e)
        r = e.post(url, body=good, headers=JSON)
        eq((r.status, r.json), (503, {"error": "cycle 'fa' is stopped"}), "stopped at once")
        eq(path_taken(before, counts(e)), "c_rejected")
        e.start_cycle("fa")
        eq(e.post(url, body=good, headers=JSON).status, 202, "running again")
        g = e.hook_url("guard", "in")
        eq(e.post(g, json={"a": 1}).status, 403, "no address allowed yet")
        e.admin("PUT", "/api/connectors/default", json={"allowed_ips": ["127.0.0.1"]})
        c0 = counts(e)[0]
        eq(e.post(g, json={"a": 1}).status, 202, "allowed after the PUT")
        eq(counts(e)[0], c0 + 1, "through the C path")
        e.admin("PUT", "/api/connectors/default", json={"allowed_ips": ["127.0.0.2"]})
        eq(e.post(g, json={"a": 1}).status, 403, "refused after the next PUT")
        # hot reload: the amount field becomes optional, qty required
        e.write("fa.lua", FA_LUA.replace('amount = "number"', 'amount = "number?"')
                .replace('qty = "integer?"', 'qty = "integer"'))
        wait_until(lambda: e.post(url, json={"order_id": "r", "qty": 2}).status == 202,
                   timeout=10, msg="the reloaded fields")
        r = e.post(url, json={"order_id": "r", "amount": 1})
        eq((r.status, r.json), (400, {"error": "field 'qty': missing (expected integer)"}))
        e.remove("fa.lua")
        wait_until(lambda: e.post(url, json={"order_id": "r", "qty": 2}).status == 404,
                   timeout=10, msg="token gone with its file")


def first_refusal(env_extra):
    """A request written while a commit stalls, whose own commit then fails:
    its answer, and the accept path counters around it.  (Written, not
    refused at the door: the store reports no failure while it stalls.)"""
    e = Engine({"fa.lua": FA_LUA}, env=env_extra)
    fault = StoreFault(e)
    with e:
        e.start()
        url = e.hook_url("fa", "in")
        eq(e.post(url, json={"order_id": "a", "amount": 1}).status, 202)
        before = counts(e)
        fault.set("stall")
        time.sleep(0.05)
        res = {}

        def post(oid):
            res[oid] = e.post(url, json={"order_id": oid, "amount": 2}, timeout=20)
        tx = threading.Thread(target=post, args=("x",))
        tx.start()  # its commit stalls (in fsync; on PostgreSQL on the tables' locks)
        time.sleep(0.3)
        tb = threading.Thread(target=post, args=("b",))
        tb.start()  # queued for the next commit
        time.sleep(0.3)
        fault.set("eio")  # the stalled fsync passes, the next one fails (PostgreSQL: both fail)
        tx.join()
        tb.join()
        after = counts(e)
        fault.set("ok")
        wait_until(lambda: e.post(url, json={"order_id": "c", "amount": 3}).status == 202,
                   timeout=15, msg="service resumes")
        e.stop()
        ids = [row[0] for row in e.db_rows(
            "SELECT json_extract(data, '$.order_id') FROM tx ORDER BY id",
            pg="SELECT data::jsonb ->> 'order_id' FROM tx ORDER BY id")]
        # (x's commit may hit the failing fsync too: SQLite syncs more than once)
        ok(res["x"].status in (202, 503), "x answered", res["x"])
        xs = ["x"] if res["x"].status == 202 else []
        eq(ids, ["a"] + xs + ["c"], "the refused request (%s) is not stored" % res["b"])
        return res["b"], before, after, len(xs)


@test
def c_path_commit_failure_is_the_lua_paths_503():
    r, before, after, nx = first_refusal({})
    eq(r.status, 503, "refused: %s" % r.body)
    eq(r.headers.get("retry-after"), "1")
    ok(r.json["error"].startswith("store unavailable: "), "names the store", r.json)
    eq((after[0] - before[0], after[1] - before[1], after[2] - before[2]), (nx, 0, 0),
       "both written by the C path (none handed to Lua); only a 202 counted as accepted")
    r2, before, after, _ = first_refusal({"HOOKWORK_FAST_ACCEPT": "0"})
    eq((after[0] - before[0], after[1] - before[1], after[2] - before[2]), (0, 2, 0), "the Lua path")
    eq((r2.status, r2.headers.get("content-type"), r2.headers.get("retry-after"), r2.body),
       (r.status, r.headers.get("content-type"), r.headers.get("retry-after"), r.body),
       "the Lua path's answer, byte for byte")


@test
def c_path_kill9_after_202_loses_nothing():
    with Engine({"fa.lua": FA_LUA}) as e:
        e.start()
        url = e.hook_url("fa", "in")
        acked, lock = [], threading.Lock()

        def worker(k):
            for i in range(40):
                r = e.post(url, json={"order_id": "k%d-%d" % (k, i), "amount": i})
                if r.status == 202:
                    with lock:
                        acked.append((r.json["transaction"], "k%d-%d" % (k, i), i))
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        eq(len(acked), 160, "every request acknowledged")
        ok(counts(e)[0] >= 160, "through the C path", counts(e))
        e.kill()
        e.start()
        for tx, oid, amount in acked:
            t = e.wait_tx(tx, "completed", timeout=30)
            eq((t["data"]["order_id"], t["data"]["amount"], t["data"]["seen"]), (oid, amount, True))


SYNC_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "sy",
  steps = {
    hw.webhook { name = "in", fields = { n = "integer", ["who.name"] = "string?" } },
    hw.decision { name = "big?", test = function(tx) return tx.data.n < 100 end, on_false = "stop" },
    hw.step { name = "maybe", run = function(tx) if tx.data.n == 13 then error("unlucky") end end },
    hw.respond { name = "out", status = 201, headers = { ["X-Seen"] = "yes" },
                 body = function(tx)
                   return { n = tx.data.n, who = tx.data.who, m = tx.request.method,
                            raw = tx.request.json.n, q = tx.request.headers["x-q"],
                            k = tx.request.query.k }
                 end },
  },
}
"""

SYNC_CASES = [
    ("sync_ok", '{"n":7,"who":{"name":"ann"}}', 201, "c"),
    ("sync_float_int", '{"n":2.0}', 201, "c"),
    ("sync_decision_stops", '{"n":500}', 200, "c"),
    ("sync_step_fails", '{"n":13}', 500, "c"),
    ("sync_missing", '{"who":{"name":"x"}}', 400, "lua"),
    ("sync_bad_json", '{"n":', 400, "lua"),
]


@test
def c_path_sync_trigger_answers_as_the_lua_path():
    fast = Engine({"sy.lua": SYNC_LUA})
    slow = Engine({"sy.lua": SYNC_LUA}, env={"HOOKWORK_FAST_ACCEPT": "0"})
    with fast, slow:
        fast.start()
        slow.start()
        got = {}
        for e in (fast, slow):
            url = e.hook_url("sy", "in")
            for name, body, status, path in SYNC_CASES:
                before = counts(e)
                r = e.post(url + "?k=v+1&k=v%2B2", body=body, headers=dict(JSON, **{"X-Q": "q1"}))
                after = counts(e)
                got.setdefault(name, []).append((r, path_taken(before, after)))
        for name, body, status, path in SYNC_CASES:
            (fr, ftaken), (sr, staken) = got[name]
            eq(fr.status, status, "%s: %s" % (name, fr.body))
            eq(ftaken, path, "%s: accept path" % name)
            eq(staken, "lua", "%s: HOOKWORK_FAST_ACCEPT=0" % name)
            # (a table the run encodes has no fixed key order: compared as JSON)
            eq(answer_of(fr, None)[:2] + (fr.json,), answer_of(sr, None)[:2] + (sr.json,),
               "%s: same answer" % name)
            eq(fr.headers.get("x-seen"), sr.headers.get("x-seen"))
        eq(got["sync_ok"][0][0].json, {"n": 7, "who": {"name": "ann"}, "m": "POST", "raw": 7, "q": "q1",
                                           "k": "v+2"})
        def answers(e):
            return sorted(l for l in e.metrics().splitlines()
                          if l.startswith("hookwork_webhook_requests_total{"))
        eq(answers(fast), answers(slow), "the answers counted alike")


SLOW_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "slow",
  sync_timeout = 1, on_sync_timeout = "accept",
  steps = {
    hw.webhook { name = "in" },
    hw.step { name = "wait", run = function(tx) hw.http.get(%s .. "/slow") end },
    hw.respond { name = "out", status = 200, body = function(tx) return { late = tx.data.k } end },
  },
}
"""


@test
def c_path_sync_timeout_hands_over_a_status_url():
    from lib import Recorder, lua_str
    with Recorder() as rec:
        rec.route("GET", "/slow", delay=1.6, json={})
        with Engine({"slow.lua": SLOW_LUA % lua_str(rec.url)}) as e:
            e.start()
            c0 = counts(e)[0]
            t0 = time.time()
            r = e.post(e.hook_url("slow", "in"), json={"k": "v"})
            dt = time.time() - t0
            eq(counts(e)[0], c0 + 1, "accepted by the C path")
            eq(r.status, 202, r.body)
            ok(0.8 <= dt < 1.6, "answered at the sync_timeout (%.2fs)" % dt)
            url = r.json["status_url"]
            eq(r.headers.get("location"), url)
            wait_until(lambda: e.post(url, method="GET").status == 200, timeout=10,
                       msg="the run's answer at the status URL")
            eq(e.post(url, method="GET").json, {"late": "v"})


# verify and dedupe on the C path (core/verify.c, core/dedupe.c): a
# request that passes is accepted in C; a failure, a duplicate, or a
# scheme that needs Lua (an hmac payload function, a dedupe key function)
# goes to the Lua path, and both engines answer and store the same.
def door_file(name, opts):
    return ('local hw = require "hookwork"\nreturn hw.cycle { name = "%s", steps = {\n'
            '  hw.webhook { name = "in", %s },\n'
            '  hw.step { name = "s", run = function(tx) end } } }\n' % (name, opts))


DOOR_FILES = {
    "gh.lua": door_file("gh", 'verify = hw.verify.github { secret = { "old", "gh-secret" } }, '
                              'dedupe = { header = "X-Id" }'),
    "sw.lua": door_file("sw", 'verify = hw.verify.standard_webhooks { secret = "whsec_c2VjcmV0LWtleQ==", '
                              'tolerance = 1e10 }, dedupe = true'),
    "fld.lua": door_file("fld", 'dedupe = { field = "order.id" }'),
    "pay.lua": door_file("pay", 'verify = hw.verify.hmac { secret = "p", header = "X-Sig", '
                                'payload = function(req) return req.body end }'),
    "kfn.lua": door_file("kfn", 'dedupe = { key = function(req) return req.headers["x-id"] end }'),
    # synchronous: verify goes along to C; dedupe stays on the Lua path (the
    # Lua caller records the first answer a duplicate is given)
    "svs.lua": 'local hw = require "hookwork"\nreturn hw.cycle { name = "svs", steps = {\n'
               '  hw.webhook { name = "in", verify = hw.verify.bearer { token = "tok" } },\n'
               '  hw.respond { name = "out", status = 201, body = function(tx) return { n = tx.data.n } end } } }\n',
    "sds.lua": 'local hw = require "hookwork"\nreturn hw.cycle { name = "sds", steps = {\n'
               '  hw.webhook { name = "in", dedupe = { header = "X-Id" } },\n'
               '  hw.respond { name = "out", status = 201, body = function(tx) return { n = tx.data.n } end } } }\n',
}


def door_cases():
    import base64
    import hashlib
    import hmac

    def gh(body, secret="gh-secret"):
        return "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()

    def sw(msg_id, body, ts="1700000000"):
        mac = hmac.new(b"secret-key", ("%s.%s.%s" % (msg_id, ts, body)).encode(), hashlib.sha256).digest()
        return {"webhook-id": msg_id, "webhook-timestamp": ts,
                "webhook-signature": "v1," + base64.b64encode(mac).decode(), **JSON}

    def sig(body):
        return hmac.new(b"p", body.encode(), hashlib.sha256).hexdigest()
    b1, b2 = '{"n":1}', '{"n":2}'
    return [
        # (name, cycle, headers, body, status, path)
        ("gh_good", "gh", {"X-Hub-Signature-256": gh(b1), "X-Id": "a", **JSON}, b1, 202, "c"),
        ("gh_duplicate", "gh", {"X-Hub-Signature-256": gh(b1), "X-Id": "a", **JSON}, b1, 202, "lua"),
        ("gh_new_key", "gh", {"X-Hub-Signature-256": gh(b2), "X-Id": "b", **JSON}, b2, 202, "c"),
        ("gh_no_key", "gh", {"X-Hub-Signature-256": gh(b2), **JSON}, b2, 202, "c"),
        ("gh_bad_sig", "gh", {"X-Hub-Signature-256": gh(b1, "nope"), "X-Id": "c", **JSON}, b1, 401, "lua"),
        ("gh_missing", "gh", {"X-Id": "d", **JSON}, b1, 401, "lua"),
        ("sw_good", "sw", sw("msg_1", b1), b1, 202, "c"),
        ("sw_duplicate", "sw", sw("msg_1", b1), b1, 202, "lua"),
        ("sw_svix_delivery", "sw", {k.replace("webhook", "svix"): v for k, v in sw("msg_2", b2).items()}, b2, 202, "c"),
        ("sw_bad", "sw", dict(sw("msg_3", b1), **{"webhook-signature": "v1,AAAA"}), b1, 401, "lua"),
        ("fld_first", "fld", JSON, '{"order":{"id":7}}', 202, "c"),
        ("fld_duplicate_as_float", "fld", JSON, '{"order":{"id":7.0},"x":1}', 202, "lua"),
        ("fld_escaped_key", "fld", JSON, '{"order":{"\\u0069d":"e1"}}', 202, "c"),
        ("fld_escaped_dup", "fld", JSON, '{"order":{"id":"e1"}}', 202, "lua"),
        ("fld_no_field", "fld", JSON, '{"order":{}}', 202, "c"),
        ("payload_fn", "pay", {"X-Sig": sig(b1), **JSON}, b1, 202, "lua"),
        ("key_fn", "kfn", {"X-Id": "k", **JSON}, b1, 202, "lua"),
        ("sync_verified", "svs", {"Authorization": "Bearer tok", **JSON}, b1, 201, "c"),
        ("sync_refused", "svs", {"Authorization": "Bearer nope", **JSON}, b1, 401, "lua"),
        ("sync_dedupe_first", "sds", {"X-Id": "s1", **JSON}, b1, 201, "lua"),
        ("sync_dedupe_again", "sds", {"X-Id": "s1", **JSON}, b2, 201, "lua"),
    ]


DEDUPE_CYCLES = ("gh", "sw", "fld")


@test
def c_path_verifies_and_dedupes_as_the_lua_path():
    fast = Engine(DOOR_FILES)
    slow = Engine(DOOR_FILES, env={"HOOKWORK_FAST_ACCEPT": "0"})
    with fast, slow:
        fast.start()
        slow.start()
        results = {}
        for e, label in ((fast, "fast"), (slow, "slow")):
            urls = {c: e.hook_url(c, "in") for c in ("gh", "sw", "fld", "pay", "kfn", "svs", "sds")}
            out = []
            for name, cyc, headers, body, status, path in door_cases():
                before = counts(e)
                r = e.post(urls[cyc], body=body, headers=headers)
                after = counts(e)
                taken = "c" if after[0] == before[0] + 1 else "lua" if after[1] == before[1] + 1 else "?"
                out.append((name, r, taken))
                if r.status == 202 and "transaction" in (r.json or {}) and not r.json.get("duplicate"):
                    e.wait_tx(r.json["transaction"], "completed")
            results[label] = out
        for case, (name, fr, taken), (_, sr, _) in zip(door_cases(), results["fast"], results["slow"]):
            eq(fr.status, case[4], "%s: status (%s)" % (name, fr.body[:200]))
            # on PostgreSQL a webhook with dedupe takes the Lua path (the
            # key is claimed across nodes there)
            want = "lua" if on_postgres() and case[1] in DEDUPE_CYCLES else case[5]
            eq(taken, want, "%s: accept path" % name)
            eq(answer_of(fr, None), answer_of(sr, None), "%s: same answer on both paths" % name)
        dup = {n: r.json for n, r, _ in results["fast"]}
        eq(dup["gh_duplicate"].get("duplicate"), True, "the duplicate is answered as one")
        eq(dup["gh_duplicate"]["transaction"], dup["gh_good"]["transaction"], "with the first's transaction")
        eq(dup["sw_duplicate"]["transaction"], dup["sw_good"]["transaction"], "delivery id dedupes")
        eq(dup["fld_duplicate_as_float"]["transaction"], dup["fld_first"]["transaction"],
           "7.0 is the key 7, as the Lua side prints it")
        eq(dup["fld_escaped_dup"]["transaction"], dup["fld_escaped_key"]["transaction"],
           "an escaped member name is the same field")
        # the keys the C path noted are in the store, like the Lua path's
        keys = sorted(r[0] for r in fast.db_rows("SELECT key FROM dedupe"))
        eq(keys, sorted(r[0] for r in slow.db_rows("SELECT key FROM dedupe")), "same dedupe rows")
        eq(keys, ["7", "a", "b", "e1", "k", "msg_1", "msg_2", "s1"], "dedupe rows")
        eq(dup["sync_dedupe_again"], {"n": 1}, "a synchronous duplicate gets the first answer")
        # a restart: the key stored by the C path still dedupes
        fast.restart()
        r = fast.post(fast.hook_url("gh", "in"), body='{"n":1}',
                      headers={"X-Hub-Signature-256": "sha256=" + __import__("hmac").new(
                          b"gh-secret", b'{"n":1}', "sha256").hexdigest(), "X-Id": "a", **JSON})
        eq((r.status, r.json.get("duplicate")), (202, True), "after a restart")
