-- ops: operations on stored work.  The stored request of a transaction,
-- retry / replay / cancel (one and in bulk), durable waits between the
-- attempts of a step's `retry` policy, the cycle's `on_failure` hand-off,
-- recent rejections and rate-limited log lines.  Every state change is
-- committed before it is answered.  Searching and the purge are in
-- search.lua and retain.lua.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local core = R.core
local O = {}

-- waits: tx id -> {job, due} (a step waiting to be tried again);
-- cancelled: tx id -> time (runs and queued jobs of it stop);
-- busy: tx ids being retried by the API right now.
-- (rej: the recent rejections; logwin: the log rate limit's window.)
local S = { rej = { items = {}, next = 1, n = 0 },
            logwin = { at = 0, n = 0, dropped = 0 } }

-- Test harness: no wait, cancellation or retry in progress (the recent
-- rejections and the log window are the process's and stay).
function O.reset()
  S.waits, S.cancelled, S.busy = {}, {}, {}
end
O.reset()

local REJ_MAX = 10000
local LOG_PER_SECOND = 100

-- ---------------------------------------------------------------- logging

-- One log line, at most LOG_PER_SECOND a second; what is dropped is
-- counted and reported with the next line that gets through.
function O.log(tag, msg)
  local w, now = S.logwin, core.now()
  if now - w.at >= 1 then
    if w.dropped > 0 then
      core.log("log", string.format("%d lines dropped (over %d a second)", w.dropped, LOG_PER_SECOND))
    end
    w.at, w.n, w.dropped = now, 0, 0
  end
  if w.n >= LOG_PER_SECOND then
    w.dropped = w.dropped + 1
    return
  end
  w.n = w.n + 1
  core.log(tag, msg)
end

function O.iso(t)
  if not t then return nil end
  local s = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", math.floor((t - s) * 1000))
end

-- A rejected webhook request: kept in memory (the last REJ_MAX) and logged
-- (unless `logged`: the caller wrote its own line through O.log).
function O.reject(cycle, step, status, reason, ip, logged, at)
  local r = S.rej
  r.items[r.next] = { time = O.iso(at or R.now()), cycle = cycle or U.null, step = step or U.null,
                      status = status, reason = reason, ip = ip or U.null }
  r.next = r.next % REJ_MAX + 1
  if r.n < REJ_MAX then r.n = r.n + 1 end
  if logged then return end
  O.log("reject", string.format("%s/%s: %s for %s: %s", tostring(cycle or "-"), tostring(step or "-"),
                                tostring(status), tostring(ip or "-"), tostring(reason)))
end

-- The rejections the C accept path answered (core/rejects.c), recorded as
-- the Lua path records its own (metrics, log line, list), at `at`: each
-- tick, and before the metrics or the list are read.
function O.drain_c()
  if not core.c_rejections then return end
  for _, x in ipairs(core.c_rejections()) do
    if x.status == 403 then R.count(R.metrics.rejected, x.cycle .. "\0" .. x.step .. "\0ip") end
    O.reject(x.cycle, x.step, x.status, x.reason, x.ip, false, x.time)
    R.count(R.metrics.webhook, (x.cycle or "-") .. "\0" .. (x.step or "-") .. "\0" .. x.status)
  end
end

-- The most recent rejections, newest first.
function O.rejections(limit)
  O.drain_c()
  local r, out = S.rej, {}
  local i = r.next
  for _ = 1, math.min(limit, r.n) do
    i = (i - 2) % REJ_MAX + 1
    out[#out + 1] = r.items[i]
  end
  return out
end

-- ---------------------------------------------------------------- requests

-- What the store keeps of a request: the body as it came, as a JSON string
-- when it is UTF-8, else base64 with body_encoding = "base64" (JSON text
-- holds only UTF-8), so it comes back byte for byte.
function O.stored_request(r, now)
  local body, enc = r.body or "", nil
  if not utf8.len(body) then
    body, enc = require("hookwork.crypto").b64_encode(body), "base64"
  end
  return U.encode({ method = r.method, path = r.path, headers = r.headers, query = r.query,
                    body = body, body_encoding = enc, ip = r.ip, received = now or R.now() })
end

-- The request as a run sees it (tx.request) from its stored form.
function O.load_request(text)
  local req = U.decode(text or "{}", "lax") or {}
  if type(req) ~= "table" then req = {} end
  if req.body_encoding == "base64" and type(req.body) == "string" then
    req.body = require("hookwork.crypto").b64_decode(req.body) or ""
  end
  req.body_encoding = nil
  req.body = type(req.body) == "string" and req.body or ""
  req.headers = type(req.headers) == "table" and req.headers or {}
  req.query = type(req.query) == "table" and req.query or {}
  local v, is_form, kind = require("hookwork.fields").parse_body(req)
  if kind == "json" then req.json = v elseif is_form then req.form = v end
  return req
end

-- Header names shown as "[redacted]": the fixed ones, the headers a
-- webhook's verify schemes read, and whatever a step.redact_headers lists.
function O.redacted()
  local set = { authorization = true, cookie = true, ["x-api-key"] = true }
  for _, cy in pairs(R.cycles) do
    for _, s in ipairs(cy.def and cy.def.steps or {}) do
      for _, h in ipairs(type(s.redact_headers) == "table" and s.redact_headers or {}) do
        set[tostring(h):lower()] = true
      end
      for _, v in ipairs(type(s.verify) == "table" and s.verify or {}) do
        for _, h in ipairs(type(v.headers) == "table" and v.headers or {}) do
          set[tostring(h):lower()] = true
        end
      end
    end
  end
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  table.sort(list)
  return U.encode(list)
end

-- ---------------------------------------------------------------- cancel

function O.is_cancelled(id) return S.cancelled[id] ~= nil end

local function err(status, msg) return { status = status, error = msg } end

local function row_of(id)
  local n = math.tointeger(tonumber(id))
  return n and core.query("tx_row", n)[1], n
end

-- waiting or running -> cancelled.  Returns the answer (status, body).
function O.cancel(id)
  local row, n = row_of(id)
  if not row then return err(404, "no transaction " .. tostring(id)) end
  if row.state ~= "waiting" and row.state ~= "running" then
    return err(409, string.format("transaction %d is %s; only waiting or running ones can be cancelled", n, row.state))
  end
  local now = R.now()
  -- request writes: if their batch fails they are dropped (503, nothing
  -- changed), never committed later behind the answer
  core.write_req("tx_cancel", n, now)
  local ok, cerr = core.commit(core.write_req("jobs_drop", n))
  if not ok then return err(503, "store unavailable: " .. tostring(cerr)) end
  O.mark_cancelled(n, now)
  return { status = 200, body = { transaction = tostring(n), state = "cancelled" } }
end

-- Transaction n is cancelled (committed here, or by another node: `by`):
-- its runs here stop at their next yield, queued ones end.
function O.mark_cancelled(n, now, by)
  S.cancelled[n] = now
  require("hookwork.accept").note_left(n) -- a park not yet durable no longer matches
  local w = S.waits[n]
  if w then
    -- a step waiting for its next attempt holds the transaction: its job
    -- goes on now, sees the mark and ends (queued runs of it do the same)
    S.waits[n] = nil
    core.spawn(require("hookwork.run").continue_job, w.job)
  end
  O.log("ops", string.format("transaction %d cancelled%s", n, by and (" " .. by) or ""))
end

-- Cancel marks are kept while anything of the transaction may still run.
function O.sweep(now)
  for id, at in pairs(S.cancelled) do
    if now - at > 30 and not require("hookwork.run").is_active(id) then S.cancelled[id] = nil end
  end
end

-- ---------------------------------------------------------------- retry

-- The step a retry starts at: the failed one, or `from` (not later).
local function start_step(def, row, from)
  local failed = row.ckpt_step or row.step
  local fi = failed and def.index[failed]
  local name = from or failed
  local i = name and def.index[name]
  if not i then
    if from then return nil, 400, string.format("from: no step '%s' in cycle '%s'", from, row.cycle) end
    return nil, 409, string.format("step '%s' no longer exists in cycle '%s'; give {\"from\": STEP}",
                                   tostring(failed), row.cycle)
  end
  if from and fi and i > fi then
    return nil, 400, string.format("from: step '%s' comes after the failed step '%s'", from, failed)
  end
  if i == 1 then -- the trigger: from the step after it
    if #def.steps < 2 then return nil, 409, "the cycle has no step after its trigger" end
    return def.steps[2].name
  end
  return name
end

-- Queues the writes of one retry; returns the job to run or nil, status, message.
local function prepare_retry(row, from)
  local id = row.id
  if S.busy[id] or require("hookwork.run").is_active(id) then
    return nil, 409, string.format("transaction %d is running", id)
  end
  if row.state ~= "failed" then
    return nil, 409, string.format("transaction %d is %s, not failed", id, row.state)
  end
  local cy = R.cycles[row.cycle]
  if not (cy and cy.def) then return nil, 409, string.format("cycle '%s' is not loaded", row.cycle) end
  local step, status, msg = start_step(cy.def, row, from)
  if not step then return nil, status, msg end
  local data = row.ckpt_data or row.data or "{}"
  local run = (row.runs or 1) + 1
  local seq = core.write_req("tx_retry", id, step, run, data, R.now())
  S.busy[id] = true
  return { seq = seq, tx = id, run = run, cycle = row.cycle, ckpt_step = step, data_json = data,
           data = U.decode(data, "lax") or {}, request = O.load_request(row.request) }
end

local function start_jobs(jobs)
  local ok, cerr = true, nil
  if #jobs > 0 then ok, cerr = core.commit(jobs[#jobs].seq) end -- one batch
  for _, job in ipairs(jobs) do
    S.busy[job.tx] = nil
    if ok then core.spawn(require("hookwork.run").run_job, job) end
  end
  return ok, cerr
end

function O.retry(id, from)
  local row = row_of(id)
  if not row then return err(404, "no transaction " .. tostring(id)) end
  if from ~= nil and type(from) ~= "string" then return err(400, "from: expected a step name") end
  local job, status, msg = prepare_retry(row, from)
  if not job then return err(status, msg) end
  local ok, cerr = start_jobs({ job })
  if not ok then return err(503, "store unavailable: " .. tostring(cerr)) end
  O.log("ops", string.format("transaction %d retried from '%s' (run %d)", row.id, job.ckpt_step, job.run))
  return { status = 202, body = { transaction = tostring(row.id), run = job.run }, job = job }
end

-- Bulk: every failed transaction the filter finds (ids from the reader).
function O.retry_many(ids)
  local jobs = {}
  for _, id in ipairs(ids) do
    local row = core.query("tx_row", id)[1]
    local job = row and prepare_retry(row)
    if job then jobs[#jobs + 1] = job end
  end
  local ok, cerr = start_jobs(jobs)
  if not ok then return err(503, "store unavailable: " .. tostring(cerr)) end
  if #jobs > 0 then O.log("ops", string.format("%d transactions retried", #jobs)) end
  return { status = 200, body = { retried = #jobs } }
end

-- ---------------------------------------------------------------- replay

-- A new transaction from the stored original request; verification and
-- dedupe are skipped (the request was let in once).
function O.replay(id)
  local row, n = row_of(id)
  if not row then return err(404, "no transaction " .. tostring(id)) end
  if not row.request then return err(409, string.format("transaction %d has no stored request", n)) end
  local cy = R.cycles[row.cycle]
  if not (cy and cy.def) then return err(409, string.format("cycle '%s' is not loaded", row.cycle)) end
  if cy.state ~= "running" then return err(409, string.format("cycle '%s' is stopped", cy.name)) end
  local st = cy.def.steps[1]
  local r = O.load_request(row.request)
  local F = require "hookwork.fields"
  local obj, is_form, kind = F.parse_body({ headers = r.headers, body = r.body })
  if obj == nil then return err(409, "the stored request no longer passes: " .. tostring(is_form)) end
  local data, ferr = F.to_data(st.spec, obj, is_form, kind, F.media_type(r.headers))
  if not data then return err(409, "the stored request no longer passes: " .. tostring(ferr)) end
  local request = { method = r.method, path = r.path, headers = r.headers, query = r.query,
                    body = r.body, ip = r.ip, json = kind == "json" and obj or nil,
                    form = is_form and obj or nil }
  local job, status, rej = require("hookwork.accept").accept(cy, st, data, obj, request, nil)
  if not job then return err(status == 404 and 409 or status, rej.error) end
  local ok, cerr = core.commit(core.write_req("tx_replay_of", job.tx, n))
  if not ok then
    require("hookwork.accept").forget(job)
    return err(503, "store unavailable: " .. tostring(cerr))
  end
  core.spawn(require("hookwork.run").run_job, job)
  O.log("ops", string.format("transaction %d replayed as %d", n, job.tx))
  return { status = 202, body = { accepted = true, transaction = tostring(job.tx), replay_of = tostring(n) } }
end

-- ---------------------------------------------------------------- waits

-- A step waits `due` for its next attempt: the run has ended, the
-- transaction stays held (runs of it never overlap) until then.
function O.wait(job, due)
  S.waits[job.tx] = { job = job, due = due }
end

-- Wakes the waits that are due; returns the jobs started.
function O.wake(now)
  local started = {}
  for id, w in pairs(S.waits) do
    if w.due <= now then
      S.waits[id] = nil
      started[#started + 1] = w.job
      core.spawn(require("hookwork.run").continue_job, w.job)
    end
  end
  return started
end

-- ---------------------------------------------------------------- on_failure

-- Hands {cycle, transaction, step, error, data} to the cycle's on_failure
-- target: another cycle's webhook (as a link does) or a URL (POST, with
-- retries).  Best effort: a failing hand-off is logged.
function O.on_failure(def, job, step, message, data)
  local target = def.on_failure
  if not target then return end
  local payload = { cycle = job.cycle, transaction = tostring(job.tx), step = step,
                    error = message, data = data }
  if target.cycle then
    local cy = R.cycles[target.cycle]
    local idx = cy and cy.def and cy.def.index[target.hook]
    local st = idx and cy.def.steps[idx]
    if not st or st.kind ~= "webhook" or cy.state ~= "running" then
      O.log("on_failure", string.format("cycle '%s': no running webhook '%s' for the failure of transaction %d",
                                        target.cycle, target.hook, job.tx))
      return
    end
    local text = U.encode(payload)
    local obj = U.decode(text)
    local fdata, ferr = require("hookwork.fields").extract(st.spec, obj, false)
    if not fdata then
      O.log("on_failure", string.format("cycle '%s': %s", target.cycle, ferr))
      return
    end
    local request = { method = "POST", path = "/hooks/" .. cy.hooks[st.name].token,
                      headers = { ["content-type"] = "application/json" }, query = {},
                      body = text, json = obj, ip = "127.0.0.1" }
    local A = require "hookwork.accept"
    local j, _, rej = A.accept(cy, st, fdata, obj, request, nil, { cycle = job.cycle, id = job.tx })
    if not j then
      O.log("on_failure", string.format("cycle '%s': %s", target.cycle, rej.error))
      return
    end
    core.spawn(function()
      local ok = core.commit()
      if ok then require("hookwork.run").run_job(j) end
    end)
  elseif target.url then
    core.spawn(function()
      local co = coroutine.running()
      -- a minimal run for hw.http: no connector, no checkpoints
      R.runs[co] = { cycle = job.cycle, connector = {}, checkpoint = function() end,
                     note_attempts = function() end }
      local ok, res = pcall(require("hookwork").http.post, target.url,
                            { json = payload, retries = 3, timeout = 10 })
      R.runs[co] = nil
      if not ok or (res.status or 0) >= 300 then
        O.log("on_failure", string.format("%s: delivery for transaction %d failed: %s", target.url, job.tx,
                                          ok and ("status " .. tostring(res.status)) or tostring(res)))
      end
    end)
  end
end

return O
