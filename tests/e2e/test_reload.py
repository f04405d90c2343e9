"""Issue 7: hot reload of cycle files, `hookwork test`, `hookwork check`."""

import json
import os
import re
import shutil
import tempfile
import time

from lib import test, Engine, Recorder, eq, ok, contains, fail, wait_until, lua_str, run_cli

TERMINAL = ("completed", "failed", "expired")


# ---------------------------------------------------------------- helpers

def greet_lua(answer, name="greet"):
    # line numbers matter for BROKEN_GREET below
    return """local hw = require "hookwork"
return hw.cycle {
  name = %s,
  steps = {
    hw.webhook { name = "in" },
    hw.respond { name = "reply", status = 200, body = %s },
  },
}
""" % (lua_str(name), lua_str(answer))


# a syntax error on line 7
BROKEN_GREET = """local hw = require "hookwork"
return hw.cycle {
  name = "greet",
  steps = {
    hw.webhook { name = "in" },
    hw.respond { name = "reply", status = 200, body = "broken" },
    hw.step { name = "bad", run = function(tx) local x = = 1 end },
  },
}
"""


def park_lua(version, name="park"):
    """Trigger answers {version}, then parks at "go"; "after" writes the version."""
    return """local hw = require "hookwork"
return hw.cycle {
  name = %s,
  steps = {
    hw.webhook { name = "in", fields = { k = "string" } },
    hw.respond { name = "ack", body = { version = %s } },
    hw.webhook { name = "go", match = "k" },
    hw.step { name = "after", run = function(tx) tx.data.version = %s end },
  },
}
""" % (lua_str(name), lua_str(version), lua_str(version))


def answer(e, cycle, step="in", body=None):
    return e.post(e.hook_url(cycle, step), json=body if body is not None else {})


def wait_answer(e, url, want, timeout=2.0, body=None):
    """POST to url until the body text is `want`; returns seconds taken."""
    t0 = time.time()
    last = None
    while True:
        last = e.post(url, json=body if body is not None else {})
        if last.status == 200 and last.text == want:
            return time.time() - t0
        if time.time() - t0 > timeout:
            fail("answer %r not served within %ss (last %r)" % (want, timeout, last))
        time.sleep(0.05)


def entries_for(cycles, name, filename):
    out = []
    for c in cycles:
        f = c.get("file") or ""
        if c.get("name") in (name, filename) or os.path.basename(f) == filename:
            out.append(c)
    return out


def load_error_of(e, name, filename):
    errs = [c.get("load_error") for c in entries_for(e.cycles(), name, filename) if c.get("load_error")]
    return errs[0] if errs else None


# ---------------------------------------------------------------- hot reload

@test
def edit_served_cycle_new_answer_within_2s():
    with Engine({"greet.lua": greet_lua("v1")}) as e:
        e.start()
        url = e.hook_url("greet", "in")
        r = e.post(url, json={})
        eq((r.status, r.text), (200, "v1"))
        ok(r.headers.get("content-type", "").startswith("text/plain"), "string body is text/plain", r.headers)
        e.write("greet.lua", greet_lua("v2"))
        wait_answer(e, url, "v2", timeout=2.0)
        eq(e.hook_url("greet", "in"), url, "same URL after reload")
        eq(e.cycle("greet").get("state"), "running")
        e.write("greet.lua", greet_lua("v3"))
        wait_answer(e, url, "v3", timeout=2.0)


@test
def rename_save_is_seen():
    with Engine({"greet.lua": greet_lua("v1")}) as e:
        e.start()
        url = e.hook_url("greet", "in")
        eq(e.post(url, json={}).text, "v1")
        e.write("greet.lua", greet_lua("v2"), rename=True)
        wait_answer(e, url, "v2", timeout=2.0)
        # a second rename-save: the watch must survive the file's replacement
        e.write("greet.lua", greet_lua("v3"), rename=True)
        wait_answer(e, url, "v3", timeout=2.0)
        # and a plain write after that
        e.write("greet.lua", greet_lua("v4"))
        wait_answer(e, url, "v4", timeout=2.0)
        eq(e.hook_url("greet", "in"), url)


@test
def syntax_error_keeps_old_version_and_shows_load_error():
    with Engine({"greet.lua": greet_lua("v1")}) as e:
        e.start()
        url = e.hook_url("greet", "in")
        eq(e.post(url, json={}).text, "v1")
        ok(not load_error_of(e, "greet", "greet.lua"), "no load_error at first")
        e.write("greet.lua", BROKEN_GREET)
        err = wait_until(lambda: load_error_of(e, "greet", "greet.lua"), timeout=2.0,
                         msg="load_error for greet.lua in /api/cycles")
        contains(err, "greet.lua:7", "load_error names the file and line (file:line: message)")
        # the old version still serves
        r = e.post(url, json={})
        eq((r.status, r.text), (200, "v1"), "previous version keeps serving")
        eq(e.cycle("greet").get("state"), "running")
        wait_until(lambda: "greet.lua:7" in e.log(), timeout=2.0, msg="the load error logged")
        # fixing the file clears it
        e.write("greet.lua", greet_lua("v2"))
        wait_answer(e, url, "v2", timeout=2.0)
        wait_until(lambda: not load_error_of(e, "greet", "greet.lua"), timeout=2.0,
                   msg="load_error cleared after the fix")
        eq(len(entries_for(e.cycles(), "greet", "greet.lua")), 1, "one entry for the cycle")


@test
def added_file_starts_serving_and_never_loaded_file_listed():
    broken = BROKEN_GREET.replace('"greet"', '"broken"')
    with Engine({"greet.lua": greet_lua("v1"), "broken.lua": broken}) as e:
        e.start()
        # a file that never loaded: listed under its file name, stopped, with load_error
        ents = entries_for(e.cycles(), "broken", "broken.lua")
        ok(ents, "broken.lua listed in /api/cycles", e.cycles())
        eq(ents[0].get("state"), "stopped")
        contains(ents[0].get("load_error"), "broken.lua:7")
        never_hooks = ents[0].get("webhooks", [])
        # a new file
        t0 = time.time()
        e.write("added.lua", greet_lua("fresh", name="added"))

        def serving():
            for c in e.cycles():
                if c.get("name") == "added":
                    for w in c.get("webhooks") or []:
                        if w.get("step") == "in" and w.get("url"):
                            r = e.post(w["url"], json={})
                            return r.status == 200 and r.text == "fresh"
            return False
        wait_until(serving, timeout=2.0, interval=0.05, msg="added.lua serving")
        ok(time.time() - t0 <= 2.5, "added file live within 2 s")
        eq(e.cycle("added").get("state"), "running", "autostart defaults to true")
        eq(e.post(e.hook_url("greet", "in"), json={}).text, "v1", "other cycles unaffected")
        ok(isinstance(never_hooks, list), "webhooks of a never-loaded file is a JSON array (SPEC), even when empty",
           never_hooks)


@test
def deleted_file_stops_accepting_and_keeps_parked():
    with Engine({"greet.lua": greet_lua("v1"), "park.lua": park_lua("v1")}) as e:
        e.start()
        url = e.hook_url("greet", "in")
        eq(e.post(url, json={}).status, 200)
        purl = e.hook_url("park", "in")
        gourl = e.hook_url("park", "go")
        r = e.post(purl, json={"k": "A"})
        eq(r.status, 200)
        lst = e.txs(cycle="park")
        eq(len(lst), 1)
        tid = lst[0]["id"]
        e.wait_tx(tid, "waiting")

        e.remove("greet.lua")
        e.remove("park.lua")

        def refused():
            r = e.post(url, json={})
            return r if r.status // 100 != 2 else None
        r = wait_until(refused, timeout=2.0, msg="deleted cycle stops accepting")
        ok(r.status in (404, 503), "a deleted cycle's webhook answers 404 or 503: %r" % r)
        r = wait_until(lambda: (lambda x: x if x.status // 100 != 2 else None)(e.post(purl, json={"k": "B"})),
                       timeout=2.0, msg="deleted park cycle stops accepting")
        ok(r.status in (404, 503), "%r" % r)
        r = e.post(gourl, json={"k": "A"})
        ok(r.status in (404, 503), "mid-cycle webhook of a deleted cycle: %r" % r)
        t = e.tx(tid)
        eq(t["state"], "waiting", "the parked transaction is kept")
        ok(not [h for h in t.get("history") or [] if h.get("step") == "after"], "not resumed", t)


@test
def restored_file_resumes_kept_parked_transaction():
    with Engine({"park.lua": park_lua("v1")}) as e:
        e.start()
        purl = e.hook_url("park", "in")
        gourl = e.hook_url("park", "go")
        eq(e.post(purl, json={"k": "A"}).status, 200)
        tid = e.txs(cycle="park")[0]["id"]
        e.wait_tx(tid, "waiting")
        e.remove("park.lua")
        wait_until(lambda: e.post(purl, json={"k": "B"}).status // 100 != 2, timeout=2.0,
                   msg="deleted cycle stops accepting")
        e.write("park.lua", park_lua("v2"))
        wait_until(lambda: e.post(gourl, json={"k": "A"}).status // 100 == 2, timeout=2.0,
                   msg="restored cycle's mid-cycle webhook (same URL) accepts again")
        t = wait_until(lambda: (lambda x: x if x["data"].get("version") else None)(e.tx(tid)),
                       timeout=5, msg="kept transaction resumed")
        eq(t["data"]["version"], "v2")


@test
def parked_transaction_resumes_on_new_definition():
    with Engine({"park.lua": park_lua("v1")}) as e:
        e.start()
        purl = e.hook_url("park", "in")
        gourl = e.hook_url("park", "go")
        r = e.post(purl, json={"k": "A"})
        eq(r.status, 200)
        eq(r.json, {"version": "v1"})
        tid = e.txs(cycle="park")[0]["id"]
        e.wait_tx(tid, "waiting")
        e.write("park.lua", park_lua("v2"))
        n = [0]

        def reloaded():
            n[0] += 1
            r = e.post(purl, json={"k": "probe%d" % n[0]})
            return r.status == 200 and r.json == {"version": "v2"}
        wait_until(reloaded, timeout=2.0, msg="new version serving")
        eq(e.hook_url("park", "go"), gourl)
        r = e.post(gourl, json={"k": "A"})
        eq(r.status, 202, "resume accepted: %r" % r)
        t = wait_until(lambda: (lambda x: x if x["data"].get("version") else None)(e.tx(tid)),
                       timeout=5, msg="parked transaction resumed")
        eq(t["data"]["version"], "v2", "the resumed run uses the new definition")
        eq(t["state"], "waiting", "stays waiting after a resumed run (SPEC)")
        runs = [h.get("run") for h in t["history"] if h.get("step") == "after"]
        eq(runs, [2], "step 'after' ran once, in run 2")


INFLIGHT = """local hw = require "hookwork"
return hw.cycle {
  name = "inflight",
  steps = {
    hw.webhook { name = "in" },
    hw.step { name = "slow", run = function(tx)
      if tx.data.slow then hw.http.get(%s) end
      tx.data.v = %s
    end },
    hw.step { name = "tail", run = function(tx) tx.data.tail = %s end },
  },
}
"""


@test
def run_in_flight_finishes_on_its_version():
    with Recorder() as rec, Engine() as e:
        rec.route("GET", "/slow", json={}, delay=2.5)
        mk = lambda v: INFLIGHT % (lua_str(rec.url + "/slow"), lua_str(v), lua_str(v))  # noqa: E731
        e.write("inflight.lua", mk("v1"))
        e.start()
        url = e.hook_url("inflight", "in")
        r = e.post(url, json={"slow": True})
        eq(r.status, 202)
        slow_id = r.json["transaction"]
        rec.wait_for("GET", "/slow", timeout=5)
        e.write("inflight.lua", mk("v2"))

        def probe():
            r = e.post(url, json={"slow": False})
            t = e.wait_tx(r.json["transaction"], TERMINAL)
            return t["data"].get("v") == "v2"
        wait_until(probe, timeout=2.0, msg="new version serving")
        t = e.tx(slow_id)
        ok(t["state"] == "running", "the slow run must still be in flight for this test to mean anything", t)
        t = e.wait_tx(slow_id, TERMINAL)
        eq(t["state"], "completed")
        eq((t["data"].get("v"), t["data"].get("tail")), ("v1", "v1"),
           "a run in flight finishes on the version it started with")


# ---------------------------------------------------------------- hookwork test

SHOP = """local hw = require "hookwork"
return hw.connector { name = "shop", base_url = "http://127.0.0.1:9000" }
"""

ORDERS = """local hw = require "hookwork"
return hw.cycle {
  name = "orders",
  connector = "shop",
  steps = {
    hw.webhook { name = "new order", fields = { order_id = "string", amount = "number" } },
    hw.step { name = "enrich", run = function(tx)
      local r = hw.http.get("/customers/" .. tx.data.order_id)
      tx.data.customer = r.json
    end },
    hw.map { name = "shape", fields = { total = "amount" } },
    hw.respond { name = "reply", status = 200,
                 body = function(tx) return { id = tx.id, total = tx.data.total, name = tx.data.customer.name } end },
    hw.webhook { name = "status", match = "order_id" },
    hw.decision { name = "despatched?", test = function(tx) return tx.data.status == "Despatched" end },
    hw.request { name = "tell erp", method = "POST", url = "/erp/despatched",
                 json = function(tx) return { order = tx.data.order_id } end },
  },
}
"""

PASSING_TEST = """local t = require "hookwork.test"

t.case("big orders are answered", function()
  t.mock("GET", "/customers/A1", { status = 200, json = { name = "Ada" } })
  local res = t.post("orders", "new order", { order_id = "A1", amount = 500 })
  t.eq(res.status, 200); t.eq(res.json.total, 500); t.eq(res.json.name, "Ada")
  t.mock("POST", "/erp/despatched", { status = 204 })
  t.post("orders", "status", { order_id = "A1", status = "Despatched" })
  t.eq(#t.requests("POST", "/erp/despatched"), 1)
  t.eq(t.transaction(res.json.id).state, "waiting")
end)

t.case("each case starts fresh", function()
  t.eq(#t.requests("GET", "/customers/A1"), 0)
  local res = t.post("orders", "status", { order_id = "A1", status = "Despatched" })
  t.eq(res.status, 404)
end)

t.case("validation applies", function()
  local res = t.post("orders", "new order", { order_id = "A2" })
  t.eq(res.status, 400)
end)

t.case("ok and fails", function()
  t.ok(true)
  t.fails(function() error("boom here") end, "boom")
end)
"""

# the failing t.eq is on line 12
FAILING_TEST = """local t = require "hookwork.test"

t.case("good one", function()
  t.mock("GET", "/customers/A1", { status = 200, json = { name = "Ada" } })
  local res = t.post("orders", "new order", { order_id = "A1", amount = 50 })
  t.eq(res.status, 200)
end)

t.case("wrong total", function()
  t.mock("GET", "/customers/A1", { status = 200, json = { name = "Ada" } })
  local res = t.post("orders", "new order", { order_id = "A1", amount = 50 })
  t.eq(res.json.total, 999)
end)
"""

UNMOCKED_TEST = """local t = require "hookwork.test"

t.case("unmocked call", function()
  t.post("orders", "new order", { order_id = "B7", amount = 5 })
end)
"""


def harness_dir(test_name, test_text):
    d = tempfile.mkdtemp(prefix="hookwork-e2e-harness-")
    for name, text in (("shop.lua", SHOP), ("orders.lua", ORDERS), (test_name, test_text)):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    return d


def out_lines(r):
    return [ln for ln in r.stdout.splitlines() if ln.strip()]


@test
def harness_passing_file():
    d = harness_dir("orders_test.lua", PASSING_TEST)
    try:
        r = run_cli(["test", d], cwd=d, timeout=30)
        lines = out_lines(r)
        info = "exit %s, stdout %r, stderr %r" % (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
        ok(lines, "hookwork test printed nothing: " + info)
        eq(lines[-1].strip(), "4 passed, 0 failed", "final line; " + info)
        eq(r.returncode, 0, "exit status; " + info)
        for name in ("big orders are answered", "each case starts fresh", "validation applies", "ok and fails"):
            ok([ln for ln in lines if ln.startswith("ok") and name in ln], "an ok line for %r; %s" % (name, info))
        ok(not [ln for ln in lines if ln.startswith("FAIL")], "no FAIL line; " + info)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@test
def harness_failing_file():
    d = harness_dir("fail_test.lua", FAILING_TEST)
    try:
        r = run_cli(["test", os.path.join(d, "fail_test.lua")], cwd=d, timeout=30)
        lines = out_lines(r)
        info = "exit %s, stdout %r, stderr %r" % (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
        ok(lines, "hookwork test printed nothing: " + info)
        eq(lines[-1].strip(), "1 passed, 1 failed", "final line; " + info)
        eq(r.returncode, 1, "exit status; " + info)
        fails = [ln for ln in lines if ln.startswith("FAIL")]
        eq(len(fails), 1, "one FAIL line; " + info)
        contains(fails[0], "wrong total", "the FAIL line names the case")
        contains(fails[0], "fail_test.lua:12", "the FAIL line gives file:line of the failed check")
        ok([ln for ln in lines if ln.startswith("ok") and "good one" in ln], "ok line for the passing case; " + info)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@test
def harness_unmocked_call_fails_case():
    d = harness_dir("unmocked_test.lua", UNMOCKED_TEST)
    try:
        r = run_cli(["test", d], cwd=d, timeout=30)
        lines = out_lines(r)
        info = "exit %s, stdout %r, stderr %r" % (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
        ok(lines, "hookwork test printed nothing: " + info)
        eq(lines[-1].strip(), "0 passed, 1 failed", "final line; " + info)
        eq(r.returncode, 1, "exit status; " + info)
        fails = [ln for ln in lines if ln.startswith("FAIL")]
        eq(len(fails), 1, "one FAIL line; " + info)
        contains(fails[0], "unmocked call")
        contains(fails[0], "/customers/B7", "the message names the unmocked call")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- hookwork check

def simple_cycle(name, steps):
    return 'local hw = require "hookwork"\nreturn hw.cycle {\n  name = "%s",\n  steps = {\n' % name \
        + steps + "  },\n}\n"


BROKEN = {
    # name: (text, must-appear-in-stderr, exact line or None)
    "dup.lua": (simple_cycle("dup",
                             '    hw.webhook { name = "in" },\n'
                             '    hw.step { name = "same", run = function(tx) end },\n'
                             '    hw.step { name = "same", run = function(tx) end },\n'),
                "same", None),
    "kind.lua": (simple_cycle("kind",
                              '    hw.webhook { name = "in" },\n'
                              '    hw.frobnicate { name = "x" },\n'),
                 "frobnicate", 6),
    "rawstep.lua": (simple_cycle("rawstep",
                                 '    hw.webhook { name = "in" },\n'
                                 '    { name = "raw", run = function(tx) end },\n'),
                    None, None),
    "target.lua": (simple_cycle("target",
                                '    hw.webhook { name = "in" },\n'
                                '    hw.decision { name = "d", test = function(tx) return true end, on_false = "nowhere" },\n'
                                '    hw.step { name = "s", run = function(tx) end },\n'),
                   "nowhere", None),
    "backward.lua": (simple_cycle("backward",
                                  '    hw.webhook { name = "in" },\n'
                                  '    hw.step { name = "first", run = function(tx) end },\n'
                                  '    hw.decision { name = "d", test = function(tx) return true end, on_false = "first" },\n'),
                     "first", None),
    "syntax.lua": (simple_cycle("syntax",
                                '    hw.webhook { name = "in" },\n'
                                '    hw.step { name = "s", run = function(tx) if then end end },\n'),
                   None, 6),
    "noconn.lua": ('local hw = require "hookwork"\nreturn hw.cycle {\n  name = "noconn",\n'
                   '  connector = "nosuch",\n  steps = {\n    hw.webhook { name = "in" },\n  },\n}\n',
                   "nosuch", None),
}


@test
def check_good_files():
    d = tempfile.mkdtemp(prefix="hookwork-e2e-check-")
    try:
        paths = []
        for name, text in (("shop.lua", SHOP), ("orders.lua", ORDERS), ("greet.lua", greet_lua("hi")),
                           ("park.lua", park_lua("v1"))):
            p = os.path.join(d, name)
            with open(p, "w") as f:
                f.write(text)
            paths.append(p)
        r = run_cli(["check"] + paths, cwd=d)
        eq(r.returncode, 0, "check of good files: stdout %r stderr %r" % (r.stdout, r.stderr))
    finally:
        shutil.rmtree(d, ignore_errors=True)


@test
def check_broken_files():
    d = tempfile.mkdtemp(prefix="hookwork-e2e-check-")
    try:
        problems = []
        for name, (text, needle, line) in sorted(BROKEN.items()):
            p = os.path.join(d, name)
            with open(p, "w") as f:
                f.write(text)
            r = run_cli(["check", p], cwd=d)
            what = "%s: exit %s stderr %r" % (name, r.returncode, r.stderr[-1000:])
            if r.returncode != 1:
                problems.append("expected exit 1; " + what)
                continue
            m = re.search(r"(?m)%s:(\d+): \S" % re.escape(name), r.stderr)
            if not m:
                problems.append("no 'FILE:LINE: message' on stderr; " + what)
                continue
            if line is not None and int(m.group(1)) != line:
                problems.append("expected line %d; %s" % (line, what))
            if needle and needle not in r.stderr:
                problems.append("message should name %r; %s" % (needle, what))
        # several files, one broken: still exit 1
        good = os.path.join(d, "greet.lua")
        with open(good, "w") as f:
            f.write(greet_lua("hi"))
        r = run_cli(["check", good, os.path.join(d, "syntax.lua")], cwd=d)
        if r.returncode != 1:
            problems.append("good + broken: expected exit 1, got %s (%r)" % (r.returncode, r.stderr))
        if problems:
            fail("\n  ".join(problems))
    finally:
        shutil.rmtree(d, ignore_errors=True)
