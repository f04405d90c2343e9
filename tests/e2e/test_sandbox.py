"""The sandbox holds (SPEC "Promises under faults and hostile code"): hostile
cycle files against a real engine, over HTTP.  Each test here failed on the
engine before the sandbox work (issue 10)."""

import os
import re
import threading
import time

from lib import (cycle, Engine, Recorder, test, eq, ok, contains, lua_str, wait_until,
                 http_request)


def accepted(r, msg=""):
    eq(r.status, 202, msg or "status (body %r)" % r.body)
    return r.json["transaction"]


def run_tx(e, name, body=None, states=("completed", "failed"), timeout=15):
    """Posts to cycle `name`'s webhook "in" and waits for the run to end."""
    tid = accepted(e.post(e.hook_url(name, "in"), json=body or {}, timeout=timeout))
    return e.wait_tx(tid, set(states), timeout=timeout)


def last_error(t):
    return (t.get("history") or [{}])[-1].get("error") or ""


def healthy(e, timeout=2):
    return e.admin("GET", "/healthz", timeout=timeout).status == 200


SIMPLE = cycle("simple", """
    hw.webhook { name = "in" },
    hw.step { name = "s", run = function(tx) tx.data.done = true end },
""")


def one_step(name, body, extra=""):
    return cycle(name, """
    hw.webhook { name = "in" },
    hw.step { name = "s", run = function(tx)
%s
    end },
""" % body, extra)


# ------------------------------------------------------------ hw façade

EVIL = """local hw = require "hookwork"
local R = {}
local orig_webhook, orig_request = hw.webhook, hw.http.request
R.webhook = { pcall(function() hw.webhook = function(o) o.ip_filtered = nil return orig_webhook(o) end end) }
R.request = { pcall(function()
  hw.http.request = function(o) STOLEN = o.json; o.url = "http://127.0.0.1:9/stolen" return orig_request(o) end
end) }
R.rawset = { pcall(rawset, hw, "webhook", function(o) o.ip_filtered = nil return orig_webhook(o) end) }
R.rawset_http = { pcall(rawset, hw.http, "post", function() return { body = "FAKE" } end) }
R.json = { pcall(function() hw.json.encode = function() return '"pwned"' end end) }
local cj = require "cjson"
R.cjson = { pcall(function() cj.encode = function() return '"pwned"' end end) }
R.same_view = require "hookwork" == hw
R.listed = 0
for k in pairs(hw) do R.listed = R.listed + 1 end
R.http_get = type(hw.http.get)
R.mt = getmetatable(hw)
local okv, scheme = pcall(hw.verify.hmac, { header = "X-Sig", secret = "k" })
R.scheme_mt = okv and type(getmetatable(scheme)) or tostring(scheme)
return hw.cycle {
  name = "evil", connector = "shared",
  steps = {
    hw.webhook { name = "in" },
    hw.step { name = "s", run = function(tx)
      R.tx_mt = type(getmetatable(tx))
      R.tx_setmt = pcall(setmetatable, tx, {})
      local okm = pcall(function() getmetatable(tx).__index = function() return "pwned" end end)
      R.tx_mt_write = okm
      R.secret_write = pcall(function() tx.connector.secrets.key = "stolen" end)
      R.step_mt = type(getmetatable(hw.step { run = function() end }))
      for k, v in pairs(R) do
        if type(v) == "table" then tx.data[k] = { v[1], tostring(v[2]) } else tx.data[k] = v end
      end
    end },
  },
}
"""

CONN_LOCKED = 'local hw = require "hookwork"\nreturn hw.connector { name = "locked", allowed_ips = { "10.9.9.9" } }\n'
CONN_SHARED = 'local hw = require "hookwork"\nreturn hw.connector { name = "shared", secrets = { key = "s1" } }\n'


def victim(url):
    return """local hw = require "hookwork"
return hw.cycle {
  name = "victim", connector = "locked",
  steps = {
    hw.webhook { name = "in", ip_filtered = true },
  },
}
""", """local hw = require "hookwork"
return hw.cycle {
  name = "victim2", connector = "shared",
  steps = {
    hw.webhook { name = "in" },
    hw.step { name = "s", run = function(tx)
      local r = hw.http.post(%s .. "/v", { json = { card = "4111111111111111" } })
      tx.data.status = r.status
      tx.data.json = hw.json.encode({ a = 1 })
      tx.data.secret = tx.connector.secrets.key
      tx.data.missing = tx.nothing == nil
    end },
  },
}
""" % lua_str(url)


@test
def each_file_gets_its_own_read_only_hookwork():
    """A file loaded first cannot wrap hw.webhook (to drop ip_filtered) or
    hw.http.request (to read and redirect every other cycle's calls), nor the
    JSON functions, the TX metatable or another run's connector secrets."""
    rec = Recorder()
    rec.route("POST", "/v", json={"ok": True})
    v1, v2 = victim(rec.url)
    files = {"aaa_evil.lua": EVIL, "conn_locked.lua": CONN_LOCKED, "conn_shared.lua": CONN_SHARED,
             "zz_victim.lua": v1, "zz_victim2.lua": v2}
    with rec, Engine(files) as e:
        e.start()
        t = run_tx(e, "evil")
        eq(t["state"], "completed", "evil step: %r" % t.get("history"))
        d = t["data"]
        for k in ("webhook", "request", "rawset", "rawset_http", "json", "cjson"):
            eq(d[k][0], False, "write to the view (%s) must fail" % k)
            contains(d[k][1], "read-only", "clear error for %s" % k)
        eq(d["same_view"], True, "one view per file")
        ok(d["listed"] >= 8, "pairs lists the API", d["listed"])
        eq(d["http_get"], "function")
        eq(d["mt"], "read-only")
        eq(d["scheme_mt"], "string", "verify scheme metatables are hidden")
        eq(d["tx_mt"], "string", "the TX metatable is hidden")
        eq(d["tx_setmt"], False)
        eq(d["tx_mt_write"], False)
        eq(d["secret_write"], False, "connector views are read-only")
        eq(d["step_mt"], "string", "step metatables are hidden")
        # the victim still filters by IP (ip_filtered was not stripped)
        r = e.post(e.hook_url("victim", "in"), json={})
        eq(r.status, 403, "ip filter still applies (%s)" % r.body)
        # the victim's outbound call went where it was written, unchanged
        t = run_tx(e, "victim2")
        eq(t["state"], "completed", "victim2: %r" % t.get("history"))
        eq(t["data"]["status"], 200)
        eq(t["data"]["json"], '{"a":1}')
        eq(t["data"]["secret"], "s1", "another run cannot change the connector's secrets")
        eq(t["data"]["missing"], True)
        eq(len(rec.find("POST", "/v")), 1, "the call reached its own URL")
        contains(rec.find("POST", "/v")[0].body.decode(), "4111111111111111")


@test
def writes_to_the_view_fail_the_load_with_a_clear_error():
    bad = 'local hw = require "hookwork"\nhw.webhook = nil\nreturn hw.cycle { name = "bad", steps = { hw.webhook { name = "in" } } }\n'
    with Engine({"bad.lua": bad, "simple.lua": SIMPLE}) as e:
        e.start()
        c = e.cycle("bad")
        contains(c.get("load_error") or "", "hookwork.webhook is read-only")
        eq(run_tx(e, "simple")["state"], "completed")


# ------------------------------------------------------------ coroutines

THIEF = """local hw = require "hookwork"
local stash, made
return hw.cycle {
  name = "thief",
  steps = {
    hw.webhook { name = "in" },
    hw.step { name = "s", run = function(tx)
      local mode = tx.data.mode
      if mode == "grab" then
        stash = coroutine.running()
        made = coroutine.create(function() coroutine.yield(1) return 2 end)
      elseif mode == "fire" then
        local forged = { status = 200, body = "FORGED", headers = {}, attempts = {}, seconds = 0 }
        local ok, err = pcall(coroutine.resume, stash, forged)
        tx.data.resume_run = { ok, tostring(err) }
        ok, err = pcall(coroutine.resume, made)
        tx.data.resume_made = { ok, tostring(err) }
        ok, err = pcall(coroutine.status, made)
        tx.data.status_made = { ok, tostring(err) }
        ok, err = pcall(coroutine.close, made)
        tx.data.close_made = { ok, tostring(err) }
        ok, err = pcall(coroutine.isyieldable, stash)
        tx.data.yieldable_run = { ok, tostring(err) }
        local w = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
        tx.data.own = { w(1), w(5) }
        local c = coroutine.create(function() coroutine.yield() end)
        coroutine.resume(c)
        tx.data.own_status = coroutine.status(c)
        tx.data.own_close = coroutine.close(c)
      end
    end },
  },
}
"""


def slow_victim(url):
    return cycle("slow", """
    hw.webhook { name = "in" },
    hw.step { name = "call", run = function(tx)
      local r = hw.http.get(%s .. "/slow")
      tx.data.body = r.body
      local r2 = hw.http.get(%s .. "/slow2")
      tx.data.body2 = r2.body
    end },
""" % (lua_str(url), lua_str(url)))


@test
def a_cycle_cannot_resume_another_runs_coroutine():
    """The finding: with pooled run threads, a cycle that kept
    coroutine.running() resumed a later run's thread while it waited on
    hw.http.get (the victim got a FORGED body; a second yield aborted the
    engine).  Now coroutine.* works only on coroutines of the same run."""
    rec = Recorder()
    rec.route("GET", "/slow", body=b"REAL", delay=1.5)
    rec.route("GET", "/slow2", body=b"REAL2")
    with rec, Engine({"thief.lua": THIEF, "slow.lua": slow_victim(rec.url)}) as e:
        e.start()
        slow_url, thief_url = e.hook_url("slow", "in"), e.hook_url("thief", "in")
        t = e.wait_tx(accepted(e.post(thief_url, json={"mode": "grab"})), "completed")
        victim_id = accepted(e.post(slow_url, json={}))
        rec.wait_for("GET", "/slow", timeout=5)
        t = e.wait_tx(accepted(e.post(thief_url, json={"mode": "fire"})), {"completed", "failed"})
        eq(t["state"], "completed", "thief: %r" % t.get("history"))
        d = t["data"]
        eq(d["resume_run"][0], False, "resuming a run's thread is refused")
        contains(d["resume_run"][1], "not a coroutine created in this run")
        eq(d["resume_made"][0], False, "a coroutine of an earlier run is refused")
        contains(d["resume_made"][1], "not a coroutine created in this run")
        for k in ("status_made", "close_made", "yieldable_run"):
            eq(d[k][0], False, k)
        eq(d["own"], [2, 10], "coroutines of the run itself work")
        eq(d["own_status"], "suspended")
        eq(d["own_close"], True)
        v = e.wait_tx(victim_id, {"completed", "failed"}, timeout=10)
        eq(v["state"], "completed", "victim: %r" % v.get("history"))
        eq(v["data"]["body"], "REAL", "the victim got its own response")
        eq(v["data"]["body2"], "REAL2")
        ok(e.running(), "the engine is alive")
        ok(healthy(e))


# ------------------------------------------------------------ __gc

@test
def gc_metamethods_are_refused():
    """A __gc finalizer runs with hooks off: `while true do end` in one froze
    the whole engine.  setmetatable with __gc is refused, at the top level
    (load_error) and in a step (the step fails)."""
    step = one_step("gc", """
      local ok, err = pcall(setmetatable, {}, { __gc = function() while true do end end })
      tx.data.err = tostring(err)
      tx.data.false_gc = pcall(setmetatable, {}, { __gc = false })
      -- __close and __mode are harmless and keep working
      do
        local c <close> = setmetatable({}, { __close = function() tx.data.closed = true end })
      end
      local weak = setmetatable({}, { __mode = "k" })
      weak[{}] = 1
      tx.data.weak = true
      setmetatable({}, { __gc = function() while true do end end })
      for i = 1, 200000 do local t = { i } end
""")
    top = 'local hw = require "hookwork"\nsetmetatable({}, { __gc = function() while true do end end })\n' \
          'return hw.cycle { name = "gctop", steps = { hw.webhook { name = "in" } } }\n'
    closer = one_step("closer", """
      do
        local c <close> = setmetatable({}, { __close = function() while true do end end })
      end
""")
    with Engine({"gc.lua": step, "gctop.lua": top, "closer.lua": closer, "simple.lua": SIMPLE}) as e:
        e.start()
        contains(e.cycle("gctop").get("load_error") or "", "__gc is not allowed in cycles")
        t = run_tx(e, "gc")
        eq(t["state"], "failed")
        contains(last_error(t), "__gc is not allowed in cycles")
        t = run_tx(e, "closer", timeout=20)
        eq(t["state"], "failed", "a looping __close is stopped by the budget")
        contains(last_error(t), "step stopped")
        for _ in range(3):
            eq(run_tx(e, "simple")["state"], "completed")
        ok(healthy(e))


@test
def gc_refusal_keeps_close_and_weak_tables():
    src = one_step("ok", """
      local ok, err = pcall(setmetatable, {}, { __gc = print })
      tx.data.gc = { ok, tostring(err) }
      do
        local c <close> = setmetatable({}, { __close = function() tx.data.closed = true end })
      end
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = {}
      tx.data.weak = getmetatable(weak).__mode
""")
    with Engine({"ok.lua": src}) as e:
        e.start()
        t = run_tx(e, "ok")
        eq(t["state"], "completed", "%r" % t.get("history"))
        eq(t["data"]["gc"], [False, t["data"]["gc"][1]])
        contains(t["data"]["gc"][1], "__gc is not allowed in cycles")
        eq(t["data"]["closed"], True)
        eq(t["data"]["weak"], "v")


# ------------------------------------------------------------ memory

@test
def memory_limits_fail_only_their_transaction():
    hog_rep = one_step("rep", 'tx.data.n = #string.rep("x", 100 * 1000 * 1000)')
    hog_table = one_step("grow", 'local t = {} for i = 1, 1e9 do t[i] = i end')
    hog_many = one_step("many", """
      local keep = {}
      for i = 1, 64 do keep[i] = string.rep(tostring(i), 50 * 1000 * 1000) end
""")
    caught = one_step("caught", """
      local ok, err = pcall(string.rep, "x", 200 * 1000 * 1000)
      tx.data.caught = { ok, tostring(err) }
      tx.data.small = #string.rep("y", 1000)
""")
    files = {"rep.lua": hog_rep, "grow.lua": hog_table, "many.lua": hog_many,
             "caught.lua": caught, "simple.lua": SIMPLE}
    with Engine(files) as e:
        e.start()
        for name in ("rep", "grow", "many"):
            t = run_tx(e, name, timeout=30)
            eq(t["state"], "failed", name)
            eq(last_error(t), "step stopped: memory limit of 67108864 bytes", name)
            eq(run_tx(e, "simple")["state"], "completed", "after " + name)
        t = run_tx(e, "caught")
        eq(t["state"], "completed", "a caught allocation failure is the step's business")
        eq(t["data"]["caught"][0], False)
        eq(t["data"]["small"], 1000)
        ok(healthy(e))


@test
def memory_limits_are_configurable():
    """HOOKWORK_RUN_MEMORY bounds one run; HOOKWORK_LUA_MEMORY the heap."""
    hog = one_step("hog", 'local s = string.rep("x", 30 * 1000 * 1000) tx.data.n = #s')
    with Engine({"hog.lua": hog, "simple.lua": SIMPLE},
                env={"HOOKWORK_RUN_MEMORY": "20000000"}) as e:
        e.start()
        t = run_tx(e, "hog")
        eq(last_error(t), "step stopped: memory limit of 20000000 bytes")
        eq(run_tx(e, "simple")["state"], "completed")
    with Engine({"hog.lua": hog, "simple.lua": SIMPLE},
                env={"HOOKWORK_LUA_MEMORY": "40000000", "HOOKWORK_RUN_MEMORY": "500000000"}) as e:
        e.start()
        t = run_tx(e, "hog")
        eq(last_error(t), "step stopped: memory limit of 40000000 bytes")
        eq(run_tx(e, "simple")["state"], "completed")


@test
def memory_is_charged_to_the_run_that_holds_it():
    """Garbage collected while other runs work does not count against them:
    many runs, each allocating a few MB that become garbage, all complete."""
    churn = one_step("churn", """
      for i = 1, 24 do local s = string.rep("z", 1000000 + i) end
      tx.data.ok = true
""")
    with Engine({"churn.lua": churn}, env={"HOOKWORK_RUN_MEMORY": "16000000"}) as e:
        e.start()
        ids = [accepted(e.post(e.hook_url("churn", "in"), json={})) for _ in range(12)]
        for i in ids:
            eq(e.wait_tx(i, {"completed", "failed"}, timeout=30)["state"], "completed")


# ------------------------------------------------------------ time in C

def watch_health(e, stop, worst):
    while not stop.is_set():
        t0 = time.time()
        try:
            http_request("127.0.0.1", e.admin_port, "GET", "/healthz", timeout=30)
        except OSError:
            pass
        worst[0] = max(worst[0], time.time() - t0)
        time.sleep(0.05)


SLOW_C = {
    "find": 'tx.data.r = string.find(("a"):rep(3000), ".-.-.-.-b")',
    "method": 'local s = ("a"):rep(3000) tx.data.r = s:match(".-.-.-.-b")',
    "gsub": 'tx.data.r = ("a"):rep(3000):gsub(".-.-.-.-b", "")',
    "gmatch": 'for x in ("a"):rep(3000):gmatch(".-.-.-.-b") do end',
    "plain": 'local s = ("a"):rep(2^24) tx.data.r = s:find(("a"):rep(2^22) .. "b", 1, true)',
    "rep": 'tx.data.r = #string.rep("", 2^50) .. #string.rep("", 2^50, "")',
    "move": 'local t = setmetatable({}, { __index = rawequal, __newindex = rawequal })\n'
            '      table.move(t, 1, math.maxinteger - 1, 2)',
    "insert": 'local t = setmetatable({}, { __len = function() return 2^40 end, __index = rawequal, __newindex = rawequal })\n'
              '      table.insert(t, 1, 0)',
    "concat": 'local t = setmetatable({}, { __index = type })\n      tx.data.r = #table.concat(t, "", 1, 2^40)',
    "load": 'local f = load(string.rep("x=1 ", 14000000))',
    "date": 'tx.data.r = #os.date(string.rep("%p", 8000000))',
    "oom_loop": 'local keep = {} for i = 1, 40 do keep[i] = string.rep("k", 1000000 + i) end\n'
                '      while true do pcall(string.rep, "x", 100000000) end',
}


@test
def c_functions_cannot_hold_the_loop():
    """The count hook sees VM instructions, not time inside one C function:
    string.find(("a"):rep(3000), ".-.-.-.-b") held the loop 33 s.  Pattern
    matching and the table library's loops charge the step budget, so each
    of these fails its transaction within about a second or two while
    /healthz keeps answering."""
    files = {"slow_%s.lua" % k: one_step("slow_" + k, body) for k, body in SLOW_C.items()}
    files["simple.lua"] = SIMPLE
    with Engine(files) as e:
        e.start()
        for k in SLOW_C:
            url = e.hook_url("slow_" + k, "in")
            stop, worst = threading.Event(), [0.0]
            th = threading.Thread(target=watch_health, args=(e, stop, worst), daemon=True)
            th.start()
            t0 = time.time()
            tid = accepted(e.post(url, json={}, timeout=60))
            t = e.wait_tx(tid, {"completed", "failed"}, timeout=60)
            took = time.time() - t0
            stop.set()
            th.join()
            if k == "rep":  # n empty copies: nothing to do, at once
                eq(t["state"], "completed", k)
                eq(t["data"]["r"], "00")
            else:
                eq(t["state"], "failed", k)
                contains(last_error(t), "step stopped: ", k)  # budget (or memory: concat, oom_loop)
            ok(took < 4, "%s ended in %.1fs" % (k, took))
            if os.environ.get("E2E_TIMES"):
                print("  %s: %.2fs, /healthz waited at most %.2fs" % (k, took, worst[0]))
            ok(worst[0] < 2.5, "/healthz waited %.1fs during %s" % (worst[0], k))
        eq(run_tx(e, "simple")["state"], "completed")


# ------------------------------------------------------------ runaway top level

SPIN_TOP = 'local hw = require "hookwork"\nwhile true do end\n'
SPIN_TOP_PCALL = 'local hw = require "hookwork"\nlocal x = 0\nwhile true do pcall(function() while true do x = x + 1 end end) end\n'


@test
def runaway_top_level_fails_only_its_load_at_start():
    """The budget's kill flag outlived the file's load: the engine exited 1
    at start.  Now the file fails to load and nothing else."""
    with Engine({"aaa_spin.lua": SPIN_TOP, "aab_spin.lua": SPIN_TOP_PCALL,
                 "zzz_good.lua": SIMPLE}) as e:
        e.start(wait=False)
        e.wait_healthy(timeout=20)
        for name in ("aaa_spin", "aab_spin"):
            c = e.cycle(name)
            contains(c.get("load_error") or "", "step stopped", name)
        eq(run_tx(e, "simple")["state"], "completed")


@test
def runaway_top_level_fails_only_its_load_at_rescan():
    """At run time the rescan died half-way: files saved with the runaway one
    never went live.  Now they do."""
    with Engine({"simple.lua": SIMPLE}) as e:
        e.start()
        # the runaway file loads last (files load in name order), so the
        # registry is rebuilt after it
        e.write("zzz_spin.lua", SPIN_TOP)
        e.write("zzz_spin2.lua", SPIN_TOP_PCALL)
        e.write("aaa_new.lua", cycle("fresh", """
    hw.webhook { name = "in" },
    hw.step { name = "s", run = function(tx) tx.data.fresh = true end },
"""))
        url = e.hook_url("fresh", "in", timeout=20)
        t = e.wait_tx(accepted(e.post(url, json={})), {"completed", "failed"})
        eq(t["state"], "completed")
        eq(t["data"]["fresh"], True)
        for name in ("zzz_spin", "zzz_spin2"):
            wait_until(lambda: "step stopped" in (e.cycle(name).get("load_error") or ""),
                       timeout=10, msg="load_error of the runaway file " + name)
        eq(run_tx(e, "simple")["state"], "completed")


# ------------------------------------------------------------ getenv

@test
def hookwork_environment_is_hidden():
    src = one_step("env", """
      tx.data.token = os.getenv("HOOKWORK_ADMIN_TOKEN") or "nil"
      tx.data.budget = os.getenv("HOOKWORK_STEP_BUDGET") or "nil"
      tx.data.probe = os.getenv("E2E_PROBE") or "nil"
""")
    top = 'local hw = require "hookwork"\nTOKEN = os.getenv("HOOKWORK_ADMIN_TOKEN")\n' \
          'return hw.cycle { name = "envtop", steps = { hw.webhook { name = "in" },\n' \
          '  hw.step { name = "s", run = function(tx) tx.data.token = TOKEN or "nil" end } } }\n'
    env = {"HOOKWORK_ADMIN_TOKEN": "sekrit-admin", "HOOKWORK_STEP_BUDGET": "60000000",
           "E2E_PROBE": "visible"}
    with Engine({"env.lua": src, "envtop.lua": top}, env=env) as e:
        e.start()
        d = run_tx(e, "env")["data"]
        eq(d["token"], "nil")
        eq(d["budget"], "nil")
        eq(d["probe"], "visible")
        eq(run_tx(e, "envtop")["data"]["token"], "nil")


# ------------------------------------------------------------ error objects

@test
def error_objects_whose_tostring_fails_end_the_transaction():
    """error(obj) whose __tostring raises left the transaction running (a
    sync caller got 504)."""
    raising = cycle("raising", """
    hw.webhook { name = "in" },
    hw.step { name = "s", run = function(tx)
      local inner = setmetatable({}, { __tostring = function() error("again") end })
      error(setmetatable({}, { __tostring = function() error(inner) end }))
    end },
    hw.respond { body = { never = true } },
""", "\n  sync_timeout = 5,")
    looping = one_step("looping", """
      error(setmetatable({}, { __tostring = function() while true do end end }))
""")
    named = one_step("named", """
      error(setmetatable({}, { __tostring = function() return "a readable error" end }))
""")
    huge = one_step("huge", """
      error(string.rep("e", 10000000))
""")
    with Engine({"raising.lua": raising, "looping.lua": looping, "named.lua": named,
                 "huge.lua": huge, "simple.lua": SIMPLE}) as e:
        e.start()
        r = e.post(e.hook_url("raising", "in"), json={}, timeout=20)
        eq(r.status, 500, "sync caller gets 500, not a 504 (%s)" % r.body)
        tid = r.json["transaction"]
        t = e.wait_tx(tid, {"failed"}, timeout=5)
        contains(last_error(t), "error object is not a string")
        t = run_tx(e, "looping", timeout=20)
        eq(t["state"], "failed")
        contains(last_error(t), "step stopped")
        t = run_tx(e, "named")
        eq(last_error(t), "a readable error")
        t = run_tx(e, "huge")  # a step's error is cut: it is stored and logged
        ok(len(last_error(t)) < 5000, "error of %d bytes" % len(last_error(t)))
        ok(re.search(r" \.\.\. \(100000\d\d bytes\)$", last_error(t)), "cut marker", last_error(t)[-40:])
        eq(run_tx(e, "simple")["state"], "completed")


# ------------------------------------------------------------ hw.link

@test
def link_checks_the_target_webhooks_methods():
    target = cycle("target", """
    hw.webhook { name = "in", methods = { "PUT" } },
""")
    post_ok = cycle("target2", """
    hw.webhook { name = "in", methods = { "PUT", "post" } },
""")
    src = cycle("source", """
    hw.webhook { name = "in" },
    hw.link { cycle = "target", hook = "in" },
""")
    src2 = cycle("source2", """
    hw.webhook { name = "in" },
    hw.link { cycle = "target2", hook = "in" },
""")
    with Engine({"target.lua": target, "target2.lua": post_ok, "source.lua": src,
                 "source2.lua": src2}) as e:
        e.start()
        t = run_tx(e, "source")
        eq(t["state"], "failed")
        contains(last_error(t), "link to target: webhook 'in' does not accept POST")
        eq(e.post(e.hook_url("target", "in"), json={}).status, 405, "as an HTTP POST would be")
        lst = e.txs(cycle="target")
        if isinstance(lst, dict):  # a page of results
            lst = lst.get("items") or lst.get("transactions") or []
        eq(lst, [], "no transaction started in the target")
        t = run_tx(e, "source2")
        eq(t["state"], "completed", "%r" % t.get("history"))


# ------------------------------------------------------------ engine reads of tx.data

@test
def engine_reads_of_data_run_no_cycle_code():
    """Outside a step the engine reads tx.data raw: a metamethod left in the
    data (here a looping __index and __pairs) cannot run there, so the run
    still ends (before: the park's lookup ran it, the kill flag outlived it
    and the transaction stayed running)."""
    src = cycle("meta", """
    hw.webhook { name = "in" },
    hw.step { name = "s", run = function(tx)
      local spin = function() while true do end end
      tx.data = setmetatable({ kept = 1 }, { __index = spin, __pairs = spin })
    end },
    hw.webhook { name = "later", match = "order" },
""")
    with Engine({"meta.lua": src, "simple.lua": SIMPLE}) as e:
        e.start()
        t = run_tx(e, "meta", states=("failed", "waiting", "completed"), timeout=20)
        eq(t["state"], "failed")
        contains(last_error(t), "tx.data.order is missing")
        eq(t["data"], {"kept": 1})
        eq(run_tx(e, "simple")["state"], "completed")


@test
def a_files_result_is_read_without_running_its_code():
    """What a file returns is read by the loader and later by the engine
    outside any step: a table of the file's own (with a looping __index)
    is refused, and the tables handed to hw.cycle/hw.connector are copied
    raw, so none of their metamethods runs in the loader or the admin API."""
    spin = "function() while true do end end"
    fake = 'return setmetatable({}, { __index = %s, __newindex = %s })\n' % (spin, spin)
    listy = ('local hw = require "hookwork"\n'
             'local steps = setmetatable({ hw.webhook { name = "in" },\n'
             '  hw.step { name = "s", run = function(tx) tx.data.ok = true end } },\n'
             '  { __index = %s, __len = %s })\n'
             'return hw.cycle { name = "listy", connector = "odd", steps = steps }\n' % (spin, spin))
    conn = ('local hw = require "hookwork"\n'
            'return hw.connector { name = "odd",\n'
            '  allowed_ips = setmetatable({ "127.0.0.1" }, { __index = %s, __len = %s }),\n'
            '  secrets = setmetatable({ k = "v" }, { __index = %s, __pairs = %s }) }\n' % (spin, spin, spin, spin))
    with Engine({"aaa_fake.lua": fake, "bbb_conn.lua": conn, "ccc_listy.lua": listy,
                 "zzz_simple.lua": SIMPLE}) as e:
        e.start(wait=False)
        e.wait_healthy(timeout=20)
        contains(e.cycle("aaa_fake").get("load_error") or "", "the file must return hw.cycle")
        t = run_tx(e, "listy")
        eq(t["state"], "completed", "%r" % t.get("history"))
        eq(e.admin("GET", "/api/connectors").status, 200)
        eq(run_tx(e, "simple")["state"], "completed")

