-- run: one run of a transaction, as a coroutine.  Executes steps from the
-- job's entry (or checkpoint), records history, parks at mid-cycle
-- webhooks, answers the waiting caller, and writes the outcome.  Runs of
-- one transaction never overlap: a job for a busy transaction queues.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local F = require "hookwork.fields"
local C = require "hookwork.callers"
local A = require "hookwork.accept"
local O = require "hookwork.ops"
local Ans = require "hookwork.answers"
local core = R.core

-- last: tx -> data JSON for the run queued next; ended: tx -> how hw.finish
-- ended it, while runs accepted before that are still queued
local M = { last = {}, ended = {} }
local Run = {}
Run.__index = Run
-- active: tx -> true while a coroutine holds the transaction; queued: tx ->
-- its accepted runs waiting for their turn, in arrival order
local active, queued = {}, {}

-- Test harness: no transaction is held or queued.
function M.reset()
  active, queued, M.last, M.ended = {}, {}, {}, {}
end

-- A coroutine holds transaction `id` (a run, or a step's wait for its
-- next attempt).
function M.is_active(id) return active[id] ~= nil end

-- Recovery: a step waiting for its next attempt holds its transaction.
function M.hold(id) active[id] = true end

-- Whether runs of transaction `id` wait in its queue here.
function M.is_queued(id) return queued[id] ~= nil end

-- Every transaction held or queued here (nodes.lua polls their
-- cancellations by other nodes).
function M.held_ids()
  local ids, seen = {}, {}
  for id in pairs(active) do ids[#ids + 1], seen[id] = id, true end
  for id in pairs(queued) do if not seen[id] then ids[#ids + 1] = id end end
  return ids
end

-- Steps' errors come back from core.protect as strings; anything else here
-- is the engine's own, and its text never runs cycle code (__tostring).
local function errmsg(e)
  if type(e) == "string" then return e end
  if type(e) == "number" then return tostring(e) end
  return "(error object is a " .. type(e) .. " value)"
end

-- What an outside caller may see of an error: its own text, without the
-- FILE:LINE: positions Lua puts in front, and never a traceback.  The full
-- message stays in the history and the log.
local function public(msg)
  msg = tostring(msg)
  for _ = 1, 8 do
    local rest = msg:match("^[^:\n]*%.lua:%d+: (.*)$") or msg:match('^%[string ".-"%]:%d+: (.*)$')
    if not rest then break end
    msg = rest
  end
  return msg:match("^(.-)\n%s*stack traceback:") or msg
end
M.public_error = public

local null = U.null

-- Times in history are integer milliseconds: cheaper to encode than
-- floating-point seconds, and precise enough.
local function ms(t) return math.floor(t * 1000) end

function Run:hist(step, status, started, err, note)
  self.history[#self.history + 1] = { step, ms(started), ms(R.now()), status,
                                      err or null, note or null }
end

-- History goes to the store one row per flush (a JSON array of entries).
function Run:flush_hist()
  local n = #self.history
  if n == self.written then return end
  local part = self.history
  if self.written > 0 then part = table.move(self.history, self.written + 1, n, 1, {}) end
  core.write("hist_insert", self.job.tx, A.next_id("hist"), self.job.run, U.encode(part))
  self.written = n
end

-- Before I/O: after a crash the run goes on from the start of this step
-- with the data it had then (at-least-once per step).
function Run:checkpoint()
  -- I/O from a decision, map or respond function: best effort, the data
  -- as it is now.
  self.step_json = self.step_json or U.encode(self.tx.data, "tx.data")
  if self.job.id then
    core.write("job_ckpt", self.job.id, self.cur.name, self.step_json)
  else
    core.write("tx_ckpt", self.job.tx, self.cur.name, self.step_json)
  end
  self:flush_hist()
end

function Run:note_attempts(method, url, attempts)
  if not attempts or #attempts < 2 then return end
  for i = 1, #attempts - 1 do
    local a = attempts[i]
    self:hist(self.cur.name, "failed", self.t0, a.error or ("status " .. a.status),
              string.format("attempt %d of %s %s", i, method, url))
  end
end

-- tx.log is made on first use: most runs never log.  The metatable is
-- protected: cycle code can neither read nor replace it.
local TX = { __metatable = "hookwork tx", __index = function(tx, k)
  if k ~= "log" then return nil end
  local f = function(msg) core.log("tx " .. rawget(tx, "id"), tostring(msg)) end
  rawset(tx, "log", f)
  return f
end }

local KIND = {}

function KIND.step(run, s) s.run(run.tx) end

function KIND.decision(run, s)
  if s.test(run.tx) then return nil end
  if s.on_false == nil or s.on_false == "stop" then return "stop" end
  return run.def.index[s.on_false], "ok", "false: on to '" .. s.on_false .. "'"
end

function KIND.map(run, s)
  local vals = {}
  for target, src in pairs(s.fields) do
    local v
    if type(src) == "function" then v = src(run.tx) else v = U.get(run.tx.data, src) end
    vals[#vals + 1] = { target, v }
  end
  for _, tv in ipairs(vals) do U.set(run.tx.data, tv[1], U.copy(tv[2])) end
end

local function value(v, tx) if type(v) == "function" then return v(tx) end return v end

-- Headers that frame the answer on the connection: the server's alone.
local FRAMING = { ["content-length"] = true, ["transfer-encoding"] = true, connection = true }

function KIND.respond(run, s)
  local tx = run.tx
  local status = value(s.status, tx) or 200
  local headers = value(s.headers, tx) or {}
  local body = value(s.body, tx)
  local ctype
  for k, v in pairs(headers) do
    if tostring(k):lower() == "content-type" then ctype = tostring(v) end
  end
  if type(body) == "table" then
    body, ctype = U.encode(body, "body"), ctype or "application/json"
  elseif body == nil then
    body = ""
  else
    body, ctype = tostring(body), ctype or "text/plain; charset=utf-8"
  end
  local list = {}
  for k, v in pairs(headers) do
    local lk = tostring(k):lower()
    if FRAMING[lk] then
      error(string.format("respond: header '%s' is set by the engine, not by a respond step", tostring(k)), 0)
    end
    local bad = U.header_problem(k, v)
    if bad then error("respond: " .. bad, 0) end
    if lk ~= "content-type" then list[#list + 1] = tostring(k) .. ": " .. tostring(v) end
  end
  if run.caller and C.pending(run.caller) then
    C.answer(run.caller, math.tointeger(status) or 200, ctype, list, body)
    return nil, "responded"
  end
  if run.def.on_sync_timeout == "accept" and not run.responded then
    -- a caller handed a status URL at sync_timeout (in this process or
    -- before a restart) reads it there; no row, no effect
    run.responded = true
    core.write("sync_answer", run.job.tx, run.job.run, math.tointeger(status) or 200,
               U.encode({ ctype = ctype, list = list }), body)
    if run.caller and run.caller.handed then return nil, "responded", "kept for the status_url" end
  end
  return nil, "ok", "no waiting caller"
end

-- hw.finish: the transaction ends here and stops waiting.
function KIND.finish(_, s) return "finish" end

local REQUEST_KEYS = { "method", "url", "headers", "query", "json", "body", "timeout",
                       "retries", "auth", "follow", "fail_on_status", "max_response",
                       "insecure" }

function KIND.request(run, s)
  local tx = run.tx
  local o = {}
  for _, k in ipairs(REQUEST_KEYS) do
    o[k] = value(s[k], tx)
  end
  o.method = o.method or "GET"
  local res = require("hookwork").http.request(o)
  tx.data[s.save_as or s.name] = res
  -- the outbound call in the history (the console's timeline shows it)
  return nil, "ok", string.format("%s %s -> %s", tostring(o.method):upper(), tostring(o.url), tostring(res.status))
end

function KIND.link(run, s)
  local target = R.cycles[s.cycle]
  if not target or not target.def then error(string.format("link: no cycle '%s'", s.cycle), 0) end
  if target.state ~= "running" then error(string.format("cycle '%s' is stopped", s.cycle), 0) end
  local idx = target.def.index[s.hook]
  local st = idx and target.def.steps[idx]
  if not st or st.kind ~= "webhook" then
    error(string.format("link: no webhook '%s' in cycle '%s'", s.hook, s.cycle), 0)
  end
  if not st.method_set.POST then -- as an HTTP POST to it would be (405)
    error(string.format("link to %s: webhook '%s' does not accept POST", s.cycle, s.hook), 0)
  end
  local body = value(s.body, run.tx) or run.tx.data
  local text = U.encode(body)
  local obj = U.decode(text)
  local data, err = F.extract(st.spec, obj, false)
  if not data then error(string.format("link to %s: %s", s.cycle, err), 0) end
  local request = { method = "POST", path = "/hooks/" .. target.hooks[st.name].token,
                    headers = { ["content-type"] = "application/json" }, query = {},
                    body = text, json = obj, ip = "127.0.0.1" }
  local job, _, rej = A.accept(target, st, data, obj, request, nil,
                               { cycle = run.cycle, id = run.job.tx })
  if not job then error(string.format("link to %s: %s", s.cycle, rej.error), 0) end
  local jobs = job.kind == "all" and job.jobs or (job.kind == nil and { job }) or {}
  for _, j in ipairs(jobs) do M.enqueue(j) end
  run:checkpoint()
  local ok, cerr = core.commit(job.seq)
  if not ok then
    A.forget(job)
    for _, j in ipairs(jobs) do M.drop(j) end
    error("link: store unavailable: " .. cerr, 0)
  end
  run.dirty = true
  for _, j in ipairs(jobs) do M.ready(j) end
  if job.kind == "buffered" then
    return nil, "ok", string.format("kept by %s for a transaction that parks later", s.cycle)
  elseif job.kind == "all" then
    local ids = {}
    for i, j in ipairs(jobs) do ids[i] = tostring(j.tx) end
    return nil, "ok", string.format("linked to %s transactions %s", s.cycle, table.concat(ids, ", "))
  end
  return nil, "ok", string.format("linked to %s transaction %d", s.cycle, job.tx)
end

local function park(run, s, t0)
  local tx = run.tx
  local v = U.get(tx.data, s.match.transaction)
  if v == nil then
    local msg = string.format("webhook '%s': tx.data.%s is missing, so no request could match",
                              s.name, s.match.transaction)
    run:hist(s.name, "failed", t0, msg)
    return "failed", s.name, msg
  end
  local mv, now = U.scalar_string(v), R.now()
  local exp = s.expires and R.clock() + s.expires or nil
  local snap = run.data_json -- tx.data as the last step left it
  core.write("tx_park", run.job.tx, s.name, mv, now, exp, snap, run.job.run)
  A.note_park(run.cycle, s.name, mv, run.job.tx, snap, exp, run.job.run, now)
  local note
  if s.early then
    -- requests kept for this value become the next runs, in arrival order
    local cy = R.cycles[run.cycle] or { name = run.cycle, def = run.def }
    run.early_jobs = A.take_early(cy, s, mv, run.job.tx, snap, run.job.run, now)
    if run.early_jobs then note = string.format("%d kept requests delivered", #run.early_jobs) end
  end
  run:hist(s.name, "parked", t0, nil, note)
  return "parked", s.name
end

-- Runs steps from run.start; returns outcome, step name, error.
local function exec(run)
  local steps = run.def.steps
  local i = run.start
  while i <= #steps do
    local s = steps[i]
    local t0 = R.now()
    run.cur, run.t0 = s, t0
    if O.is_cancelled(run.job.tx) then return "cancelled", s.name end
    if s.kind == "webhook" then return park(run, s, t0) end
    -- The data this step starts from: where a crash during its I/O
    -- resumes.  After a step that did I/O, that point is also written
    -- down, so a crash later does not repeat the finished call.
    if s.kind == "step" or s.kind == "request" or s.kind == "link" or run.dirty then
      run.step_json = run.data_json -- tx.data has not changed since
    else
      run.step_json = nil
    end
    if run.dirty then
      run:checkpoint()
      core.seal() -- on its way to disk even if this step runs long
      run.dirty = false
    end
    R.count(R.metrics.tasks, run.cycle)
    -- One step, one protected call: its budget and memory scope end here,
    -- and any error comes back as a string.
    run.data_fresh = false -- the step may change tx.data
    local ok, ctl, status, note = core.protect(KIND[s.kind], run, s)
    if O.is_cancelled(run.job.tx) then
      run:hist(s.name, "stopped", t0, "cancelled")
      return "cancelled", s.name
    end
    if not ok then
      local msg = ctl
      local attempt = run.attempt or 1
      if s.retry and attempt < s.retry.attempts then
        -- the step is tried again after a durable wait (the run ends here)
        local d = s.retry.delays[math.min(attempt, #s.retry.delays)] or 0
        local due = R.clock() + d -- waited on the monotonic-based clock, as expires
        run:hist(s.name, "failed", t0, msg, string.format("attempt %d of %d; next at %s",
                                                           attempt, s.retry.attempts, O.iso(due)))
        run.wait_due, run.attempt = due, attempt + 1
        run.step_json = run.step_json or run.data_json
        return "retry_wait", s.name, msg
      end
      if s.on_error then
        run:hist(s.name, "failed", t0, msg, "on to '" .. s.on_error .. "'")
        run.tx.error = { step = s.name, message = msg }
        run.attempt = nil
        i = run.def.index[s.on_error]
        goto continue
      end
      run:hist(s.name, "failed", t0, msg)
      run.step_json = run.step_json or run.data_json
      return "failed", s.name, msg
    end
    -- Data this step left that JSON cannot hold (nan, inf, a function, a
    -- cycle, nesting over 200) fails this step, named by its path, while
    -- the last storable data is still at hand.
    local enc_ok, text = pcall(U.encode, run.tx.data, "tx.data")
    if not enc_ok then
      local msg = errmsg(text)
      run:hist(s.name, "failed", t0, msg)
      return "failed", s.name, msg
    end
    run.data_json, run.data_fresh = text, true
    run.attempt = nil
    if ctl == "stop" then
      run:hist(s.name, "stopped", t0)
      return "completed", s.name
    end
    if ctl == "finish" then
      run:hist(s.name, "ok", t0, nil, "finished: " .. s.state)
      return "finished", s.name, nil, s.state
    end
    run:hist(s.name, status or "ok", t0, nil, note)
    i = type(ctl) == "number" and ctl or i + 1
    ::continue::
  end
  return "completed", steps[#steps].name
end

-- A run uses the cycle's current definition (a parked transaction resumes
-- on the version saved since), or the one it was accepted under when the
-- file has gone since.
local function setup(job)
  local cy = R.cycles[job.cycle]
  local def = cy and cy.def or job.def
  if not def then return nil, string.format("cycle '%s' is not loaded", job.cycle) end
  local conn = R.connectors[def.connector] or {}
  if job.base == "latest" and not job.ckpt_step then
    -- resume_with = "latest": the data the previous run ended with (kept
    -- in memory for a run queued behind it, else committed by now)
    local base = M.last[job.tx]
    M.last[job.tx] = nil
    if not base then
      local row = core.query("tx_data", job.tx)
      base = row and row[1] and row[1].data
    end
    job.data = U.merge(U.decode(base or "{}", "lax") or {}, job.data)
    job.base, job.data_json = nil, nil -- the stored JSON is the request's part only
  end
  local tx = { id = tostring(job.tx), data = job.data, cycle = job.cycle,
               request = job.request, run = job.run, connector = conn.view }
  setmetatable(tx, TX)
  local run = setmetatable({ job = job, tx = tx, def = def, cycle = job.cycle,
                             connector = R.connectors[def.connector] or {},
                             history = {}, written = 0, caller = job.caller,
                             attempt = job.attempt }, Run)
  if job.ckpt_step then
    run.start = def.index[job.ckpt_step]
    if not run.start then
      return run, string.format("step '%s' no longer exists in cycle '%s'", job.ckpt_step, job.cycle)
    end
  else
    local idx = def.index[job.entry]
    if not idx then
      return run, string.format("webhook '%s' no longer exists in cycle '%s'", job.entry, job.cycle)
    end
    run:hist(job.entry, "ok", job.accepted or R.now())
    run.start = idx + 1
  end
  return run
end

-- The data a run ends with: as it is now, or, when that cannot be stored,
-- as it was after the last step that left it storable.
local function final_data(run, job)
  if run and run.data_fresh then return run.data_json end
  local ok, text = pcall(U.encode, run and run.tx.data or job.data, "tx.data")
  if ok then return text end
  return run and run.data_json or "{}"
end

-- A step waits for its next attempt: where the run goes on from (that
-- step, with the data it began with) and when are written down, so a
-- restart resumes the countdown; the transaction stays held meanwhile.
local function wait_retry(run, job, step)
  local due = run.wait_due
  job.ckpt_step, job.data, job.data_json = step, U.decode(run.step_json, "lax") or {}, run.step_json
  job.attempt, job.retry_at, job.accepted = run.attempt, due, nil
  if job.id then
    core.write("job_retry_wait", job.id, step, run.step_json, due, run.attempt)
  else
    core.write("tx_retry_wait", job.tx, step, run.step_json, due, run.attempt, R.now())
  end
  run:flush_hist()
  O.wait(job, due)
  if job.on_pause then job.on_pause() end
end

local function finish(run, job, outcome, step, err, final)
  local now = R.now()
  if outcome == "retry_wait" then return wait_retry(run, job, step) end
  local data = outcome ~= "parked" and final_data(run, job)
  if outcome == "parked" then
    -- tx_park wrote everything
  elseif outcome == "finished" then
    core.write("tx_update", job.tx, final, step, data, now, job.run, err)
    A.note_left(job.tx)
    M.ended[job.tx] = { state = final, step = step }
  elseif job.id then -- a resumed run: the transaction stays waiting
    core.write("tx_run_end", job.tx, data, now, job.run, err)
  else -- the transaction's own run (the first, or a retry)
    core.write("tx_update", job.tx, outcome, step, data, now, job.run, err)
    if outcome == "failed" then
      core.write("tx_failed_at", job.tx, step, run and run.step_json or data)
    end
  end
  if run then run:flush_hist() end
  if job.id then
    core.write("job_delete", job.id)
    A.job_done(job.tx)
  end
  if outcome == "failed" then
    -- the full message, position included (the caller gets public(err));
    -- rate limited with the rejection lines
    O.log("tx " .. job.tx, string.format("transaction %d of cycle '%s' failed at step '%s': %s",
                                         job.tx, job.cycle, tostring(step), tostring(err)))
    local def = run and run.def or job.def
    if def then O.on_failure(def, job, step, err, U.decode(data or "{}", "lax") or {}) end
  end
  -- the next run queued behind this one may start from this data
  if queued[job.tx] then M.last[job.tx] = data or final_data(run, job) end
  local caller = job.caller
  local to_caller = caller and C.pending(caller)
  -- (composed only when someone gets it: a fire-and-forget run has no
  -- caller left, and its end allocates no answer)
  if to_caller or (run and run.def.on_sync_timeout == "accept" and not run.responded) then
    local id, status, body = tostring(job.tx)
    if outcome == "failed" then
      status, body = Ans.failed(id, step, public(err))
    else
      local st = outcome == "finished" and final
                 or ((outcome == "parked" or job.id) and "waiting"
                     or (outcome == "cancelled" and "cancelled" or "completed"))
      status, body = Ans.sync_state(id, st)
    end
    if to_caller then
      C.send(caller, status, body)
    else
      core.write("sync_answer", job.tx, job.run, status,
                 U.encode({ ctype = "application/json" }), U.encode(body))
    end
  end
  if job.on_end then job.on_end(outcome) end
end

-- The per-transaction queue.  A job takes its place when it is accepted
-- (in arrival order, queued[tx]) and becomes ready once its writes are
-- durable; the transaction runs its head job when that is ready and no run
-- holds it (active[tx]).  So runs of one transaction never overlap and
-- follow arrival order, whatever order the commits are reported in.
local run_held

function M.pump(id)
  if active[id] then return end
  local q = queued[id]
  local head = q and q[1]
  if not head or not head.ready then
    -- several nodes: nothing of it left here, its lock can go
    if not q and R.cfg.store == "postgres" then require("hookwork.nodes").release(id) end
    return
  end
  table.remove(q, 1)
  if #q == 0 then queued[id] = nil end
  active[id] = true
  core.spawn(run_held, head)
end

-- Takes the job's place in its transaction's queue (at accept time).
function M.enqueue(job)
  local q = queued[job.tx]
  if not q then q = {}; queued[job.tx] = q end
  q[#q + 1] = job
end

-- The job's writes are durable: it may run when its turn comes.
function M.ready(job)
  job.ready = true
  M.pump(job.tx)
end

-- The job will not run (its request was not stored): it leaves the queue.
function M.drop(job)
  local q = queued[job.tx]
  for i = 1, q and #q or 0 do
    if q[i] == job then table.remove(q, i) break end
  end
  if q and #q == 0 then queued[job.tx] = nil end
  if not queued[job.tx] and not active[job.tx] then M.last[job.tx] = nil end
  M.pump(job.tx)
  if job.after then job.after() end
end

-- Enqueued and ready at once (recovery, links).
function M.start(job)
  M.enqueue(job)
  M.ready(job)
end

-- The job's writes are durable: when it is its transaction's turn now, it
-- runs in the calling coroutine (no extra coroutine on the common path);
-- otherwise it waits in the queue for its turn.
function M.run_ready(job)
  job.ready = true
  local id = job.tx
  local q = queued[id]
  if active[id] or not q or q[1] ~= job then return M.pump(id) end
  table.remove(q, 1)
  if #q == 0 then queued[id] = nil end
  active[id] = true
  run_held(job)
end

-- Runs the job in its turn and returns when it has ended (the calling
-- coroutine waits: recovery counts its runs in flight this way).
function M.run_job(job)
  local id = job.tx
  if not active[id] and not queued[id] then -- its turn now: run it here
    active[id] = true
    return run_held(job)
  end
  local me, waiting, done = coroutine.running(), false, false
  job.after = function()
    done = true
    if waiting then waiting = false; core.wake(me) end
  end
  M.start(job)
  while not done do waiting = true; core.wait() end
end

-- A job of a cancelled transaction ends without running.
function M.end_cancelled(job)
  if job.id then
    core.write("job_delete", job.id)
    A.job_done(job.tx)
  end
  if job.caller and C.pending(job.caller) then
    C.send(job.caller, Ans.sync_state(job.tx, "cancelled"))
  end
  if job.on_end then job.on_end("cancelled") end
end

-- A resume accepted before hw.finish ended its transaction: it does not
-- run (it could park the ended transaction again); its history says so.
local function skip_ended(job, ended)
  local now = ms(R.now())
  core.write("job_delete", job.id)
  A.job_done(job.tx)
  core.write("hist_insert", job.tx, A.next_id("hist"), job.run,
             U.encode({ { job.entry, now, now, "stopped", null,
                          string.format("not run: the transaction ended at '%s'", ended.step) } }))
  if job.caller and C.pending(job.caller) then
    C.send(job.caller, Ans.sync_state(job.tx, ended.state))
  end
  if job.on_end then job.on_end("completed") end
end

-- Runs a job whose transaction this coroutine holds (active): a step's
-- next attempt goes on here after its wait (ops.lua).
run_held = function(job)
  local id = job.tx
  -- several nodes: a resume waits while another node runs this transaction
  if job.id and R.cfg.store == "postgres" then require("hookwork.nodes").lock(id) end
  if job.id and M.ended[id] then
    local ok, ferr = pcall(skip_ended, job, M.ended[id])
    if not ok then core.log("run", "skipping a run of transaction " .. id .. ": " .. tostring(ferr)) end
    active[id] = nil
    if not queued[id] then M.last[id], M.ended[id] = nil, nil end
    M.pump(id)
    if job.after then job.after() end
    return
  end
  if O.is_cancelled(id) then
    M.end_cancelled(job)
    active[id] = nil
    if not queued[id] then M.last[id] = nil end
    M.pump(id)
    if job.after then job.after() end
    return
  end
  local co = coroutine.running()
  local ok0, run, err = pcall(setup, job)
  if not ok0 then run, err = nil, errmsg(run) end
  local outcome, step, final = "failed", job.entry, nil
  if run then R.runs[co] = run end
  if run and not err then
    -- accept encoded the same data for the store: no need to again
    local ok, text = true, job.data_json
    if not text then ok, text = pcall(U.encode, run.tx.data, "tx.data") end
    if ok then run.data_json, run.data_fresh = text, true end
  end
  if run and not err and not run.data_json then
    err = "tx.data cannot be stored"
  elseif run and not err then
    local ok, o, s, e, f = pcall(exec, run)
    if ok then outcome, step, err, final = o, s, e, f else err = errmsg(o) end
  end
  R.runs[co] = nil
  local ok, ferr = pcall(finish, run, job, outcome, step, err, final)
  if not ok then core.log("run", "finishing transaction " .. id .. ": " .. tostring(ferr)) end
  if outcome == "retry_wait" and ok then -- still held until the next attempt
    if job.after then job.after() end
    return
  end
  if run and run.early_jobs then
    -- kept requests the park turned into runs: queued now, behind
    -- whatever was accepted before the park, ahead of anything after it;
    -- they run once the park and their jobs are durable
    local jobs = run.early_jobs
    for _, j in ipairs(jobs) do M.enqueue(j) end
    core.spawn(function()
      local cok = core.commit()
      for _, j in ipairs(jobs) do
        if cok then M.ready(j) else A.job_done(j.tx); M.drop(j) end
      end
    end)
  end
  active[id] = nil
  if not queued[id] then M.last[id], M.ended[id] = nil, nil end
  M.pump(id)
  if job.after then job.after() end
end

M.continue_job = function(job) return run_held(job) end

return M
