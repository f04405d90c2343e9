-- engine: the entry points C calls (start, rescan, webhook, tick, admin,
-- shutdown, check_main, test_main) and the accept path every webhook
-- request, link and test post goes through.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local F = require "hookwork.fields"
local C = require "hookwork.callers"
local L = require "hookwork.loader"
local M = require "hookwork.run"
local core = R.core
local E = {}

R.ids = { tx = 0, job = 0 }
-- Parks and run numbers not yet committed, in two generations dropped every
-- few seconds (commits take milliseconds), so memory stays flat.
R.pend = { cur = {}, prev = {}, pos = {}, pos_prev = {}, at = 0 }
R.lastrun = { cur = {}, prev = {} }

local function rotate(now)
  if now - R.pend.at < 5 then return end
  R.pend.prev, R.pend.cur = R.pend.cur, {}
  R.pend.pos_prev, R.pend.pos = R.pend.pos, {}
  R.lastrun.prev, R.lastrun.cur = R.lastrun.cur, {}
  R.pend.at = now
end

function M.note_park(cycle, step, mv, tx, snap, exp, run)
  local key = cycle .. "\0" .. step .. "\0" .. mv
  R.pend.cur[key] = { tx = tx, snapshot = snap, expires_at = exp, runs = run }
  R.pend.pos[tx] = key
end

local function pos_of(tx) return R.pend.pos[tx] or R.pend.pos_prev[tx] end

local function find_waiting(cycle, step, mv)
  local key = cycle .. "\0" .. step .. "\0" .. mv
  local now = R.now()
  local p = R.pend.cur[key] or R.pend.prev[key]
  if p and pos_of(p.tx) == key and (not p.expires_at or p.expires_at > now) and not p.expired then
    return { id = p.tx, snapshot = p.snapshot, runs = p.runs }
  end
  local row = core.query("find_waiting", cycle, step, mv, now)[1]
  if row and pos_of(row.id) and pos_of(row.id) ~= key then return nil end
  return row
end

local function next_run(id, stored)
  local last = R.lastrun.cur[id] or R.lastrun.prev[id] or 0
  if stored and stored > last then last = stored end
  R.lastrun.cur[id] = last + 1
  return last + 1
end

-- Accepts a validated request for webhook step `st` of cycle `cy`: queues
-- the writes that make it durable and returns the job to run, or nil,
-- status, message.  The caller commits before acknowledging.
-- What the store keeps of a request (tx.request, rebuilt after a restart:
-- json is parsed again from the body).
local function stored_request(r)
  return U.encode({ method = r.method, path = r.path, headers = r.headers,
                    query = r.query, body = r.body, ip = r.ip })
end

function M.accept(cy, st, data, obj, request, caller, linked)
  local now = R.now()
  local job
  if st.index == 1 then
    R.ids.tx = R.ids.tx + 1
    local id = R.ids.tx
    job = { tx = id, run = 1, data = data }
    core.write("tx_insert", id, cy.name, "running", st.name, U.encode(data), now, now, 1,
               linked and linked.cycle, linked and linked.id, stored_request(request))
  else
    local m = st.match
    local v = U.get(data, m.request)
    if v == nil then v = U.get(obj, m.request) end
    if v == nil or type(v) == "table" then
      return nil, 400, string.format("field '%s': missing (it finds the waiting transaction)", m.request)
    end
    local mv = U.scalar_string(v)
    local found = find_waiting(cy.name, st.name, mv)
    if not found then
      return nil, 404, string.format("no waiting transaction with %s = %s", m.transaction, mv)
    end
    local snap = U.decode(found.snapshot or "{}") or {}
    job = { tx = found.id, run = next_run(found.id, found.runs), data = U.merge(snap, data) }
    R.ids.job = R.ids.job + 1
    job.id = R.ids.job
    core.write("job_insert", job.id, job.tx, job.run, st.name, U.encode(job.data),
               stored_request(request))
  end
  job.cycle, job.entry, job.request, job.accepted = cy.name, st.name, request, now
  if caller then
    caller.tx = job.tx
    job.caller, job.on_end = caller, caller.on_end
    if st.sync then
      caller.timeout = cy.def.sync_timeout
      caller.deadline = now + cy.def.sync_timeout
    end
  end
  return job
end

-- The start of a run for an accepted request: durable first, then 202
-- (fire-and-forget) and the run itself.
local function start_job(job, sync)
  local ok, err = core.commit()
  if not ok then
    if job.caller then C.json(job.caller, 500, { error = "could not store the request: " .. tostring(err) }) end
    if job.on_end then job.on_end("failed") end
    return
  end
  if job.caller and not sync then
    C.answer(job.caller, 202, "application/json", nil,
             '{"accepted":true,"transaction":"' .. job.tx .. '"}')
    job.caller = nil
  end
  M.run_job(job)
end

-- Validates a request for a webhook and starts it; returns nil or an
-- answer (status, message) for a rejection.  Shared by HTTP and t.post.
function E.submit(hook, r, caller)
  local cy = R.cycles[hook.cycle]
  local st = cy and cy.def and cy.def.steps[cy.def.index[hook.step] or 0]
  if not st then return 404, "unknown webhook" end
  if not st.method_set[r.method] then return 405, "method " .. r.method .. " not allowed" end
  if cy.state ~= "running" then return 503, string.format("cycle '%s' is stopped", cy.name) end
  if st.ip_filtered then
    local conn = R.connectors[cy.def.connector]
    if not (conn and conn.filter and core.ip_match(conn.filter, r.ip)) then
      R.count(R.metrics.rejected, cy.def.connector .. "\0ip")
      return 403, string.format("address %s is not allowed for this webhook", r.ip)
    end
  end
  local obj, is_form = F.parse_body(r)
  if not obj then return 400, is_form end
  local data, err = F.extract(st.spec, obj, is_form)
  if not data then return 400, err end
  local request = { method = r.method, path = r.path, headers = r.headers,
                    query = U.parse_query(r.query), body = r.body, ip = r.ip,
                    json = (not is_form) and obj or nil, form = is_form and obj or nil }
  local job, status, msg = M.accept(cy, st, data, obj, request, caller)
  if not job then return status, msg end
  core.spawn(start_job, job, st.sync)
  return nil
end

local function handle(r, h)
  local token = r.path:match("^/hooks/([%w_%-]+)/?$")
  local hook = token and R.tokens[token]
  local caller = C.new(h, hook and hook.cycle, hook and hook.step)
  if not hook then return C.json(caller, 404, { error = "unknown webhook" }) end
  local status, msg = E.submit(hook, r, caller)
  if status then
    local headers
    if status == 405 then headers = { "Allow: " .. E.allow(hook) } end
    C.json(caller, status, { error = msg }, headers)
  end
end

function E.allow(hook)
  local cy = R.cycles[hook.cycle]
  local st = cy.def.steps[cy.def.index[hook.step]]
  local list = {}
  for m in pairs(st.method_set) do list[#list + 1] = m end
  table.sort(list)
  return table.concat(list, ", ")
end

function E.webhook(r, h)
  local ok, err = pcall(handle, r, h)
  if not ok then
    core.log("webhook", tostring(err))
    if not core.gone(h) then
      for c in pairs(R.callers) do
        if c.h == h then return C.json(c, 500, { error = "internal error" }) end
      end
      core.answer(h, 500, "application/json", nil, '{"error":"internal error"}')
    end
  end
end

function E.rescan()
  if L.scan(R.cfg.cycles_dir) then
    L.rebuild()
    core.log("loader", "cycles reloaded")
  end
end

-- Start-up: registry from the store and the directory, then every job the
-- store still holds (accepted but unfinished) runs again, in arrival order.
function E.start()
  R.cfg = core.config()
  L.restore()
  L.scan(R.cfg.cycles_dir)
  L.rebuild()
  local ids = core.query("max_ids")[1]
  R.ids.tx, R.ids.job = ids.tx, ids.job
  local n = 0
  local function recover(j, run)
    local req = U.decode(j.request or "{}") or {}
    if type(req.body) == "string" and req.body:match("^%s*{") then req.json = U.decode(req.body) end
    core.spawn(M.run_job, { id = j.id, tx = j.tx, run = run or j.run,
                            cycle = j.cycle, entry = j.entry, ckpt_step = j.ckpt_step,
                            data = U.decode(j.ckpt_data or j.data or "{}") or {},
                            request = req })
    n = n + 1
  end
  for _, j in ipairs(core.query("tx_running")) do
    j.tx, j.id = j.id, nil
    recover(j, 1)
  end
  for _, j in ipairs(core.query("jobs_all")) do recover(j) end
  if n > 0 then core.log("engine", n .. " unfinished runs resume") end
end

local last_expiry = 0
local function expire(now, force)
  if not force and now - last_expiry < 0.5 then return end
  last_expiry = now
  for _, row in ipairs(core.query("expired", now)) do
    core.write("tx_expire", row.id, now)
    local key = pos_of(row.id)
    local p = key and (R.pend.cur[key] or R.pend.prev[key])
    if p and p.tx == row.id then p.expired = true end
  end
end

function E.tick()
  local now = R.now()
  C.tick(now)
  if R.cfg.mode ~= 2 then expire(now) end
  rotate(now)
end

function E.shutdown() C.shutdown() end
function E.expire_now() expire(R.now(), true) end

function E.admin(method, path, query, body)
  return require("hookwork.admin").route(method, path, query, body)
end

function E.check_main(files) return require("hookwork.check").main(files) end
function E.test_main(paths) return require("hookwork.harness").main(paths, E) end

return E
