-- accept: turns a validated webhook request into a job: a new transaction
-- (trigger) or the next run of the waiting transaction it matches (the
-- Webhook Mapping), with the writes that make it durable queued.  Also
-- remembers parks and run numbers not yet committed, so a request that
-- arrives right after a park or a resume still sees them.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local core = R.core
local A = {}

R.ids = { tx = 0, job = 0, hist = 0 }
-- Parks and run numbers not yet committed, in two generations dropped every
-- few seconds (commits take milliseconds), so memory stays flat.
R.pend = { cur = {}, prev = {}, pos = {}, pos_prev = {}, at = 0 }
R.lastrun = { cur = {}, prev = {} }

function A.rotate(now)
  if now - R.pend.at < 5 then return end
  -- while commits fail, parks may not be on disk yet: keep them in memory
  if core.store_refusal() then return end
  R.pend.prev, R.pend.cur = R.pend.cur, {}
  R.pend.pos_prev, R.pend.pos = R.pend.pos, {}
  R.lastrun.prev, R.lastrun.cur = R.lastrun.cur, {}
  R.pend.at = now
end

function A.note_park(cycle, step, mv, tx, snap, exp, run)
  local key = cycle .. "\0" .. step .. "\0" .. mv
  R.pend.cur[key] = { tx = tx, snapshot = snap, expires_at = exp, runs = run }
  R.pend.pos[tx] = key
end

function A.pos_of(tx) return R.pend.pos[tx] or R.pend.pos_prev[tx] end

local function find_waiting(cycle, step, mv)
  local key = cycle .. "\0" .. step .. "\0" .. mv
  local now = R.clock()
  local p = R.pend.cur[key] or R.pend.prev[key]
  if p and A.pos_of(p.tx) == key and (not p.expires_at or p.expires_at > now) and not p.expired then
    return { id = p.tx, snapshot = p.snapshot, runs = p.runs }
  end
  local row = core.query("find_waiting", cycle, step, mv, now)[1]
  if row and A.pos_of(row.id) and A.pos_of(row.id) ~= key then return nil end
  return row
end

local function next_run(id, stored)
  local last = R.lastrun.cur[id] or R.lastrun.prev[id] or 0
  if stored and stored > last then last = stored end
  R.lastrun.cur[id] = last + 1
  return last + 1
end

-- A job whose request write was dropped (its commit failed): the run number
-- it took is given back unless a later one was handed out since.
function A.forget(job)
  if job.run and job.run > 1 and R.lastrun.cur[job.tx] == job.run then
    R.lastrun.cur[job.tx] = job.run - 1
  end
end

-- What the store keeps of a request (tx.request, rebuilt after a restart:
-- json is parsed again from the body).  JSON text holds only UTF-8, so a
-- body that is not (binary, Latin-1) is kept as base64, byte for byte.
local function stored_request(r)
  local body, enc = r.body, nil
  if type(body) == "string" and not utf8.len(body) then
    body, enc = require("hookwork.crypto").b64_encode(body), "base64"
  end
  return U.encode({ method = r.method, path = r.path, headers = r.headers,
                    query = r.query, body = body, body_encoding = enc, ip = r.ip })
end

-- Accepts a validated request for webhook step `st` of cycle `cy`: queues
-- the writes that make it durable and returns the job to run, or nil,
-- status, message.  The caller commits before acknowledging.
function A.accept(cy, st, data, obj, request, caller, linked)
  local now = R.now()
  local job
  if st.index == 1 then
    R.ids.tx = R.ids.tx + 1
    local id = R.ids.tx
    job = { tx = id, run = 1, data = data, data_json = U.encode(data, "tx.data") }
    job.seq = core.write_req("tx_insert", id, cy.name, "running", st.name, job.data_json, now,
                             now, 1, linked and linked.cycle, linked and linked.id,
                             stored_request(request))
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
    local snap = U.decode(found.snapshot or "{}", "lax") or {}
    job = { tx = found.id, run = next_run(found.id, found.runs), data = U.merge(snap, data) }
    R.ids.job = R.ids.job + 1
    job.id = R.ids.job
    job.data_json = U.encode(job.data, "tx.data") -- the run starts from it too
    job.seq = core.write_req("job_insert", job.id, job.tx, job.run, st.name,
                             job.data_json, stored_request(request))
  end
  job.cycle, job.entry, job.request, job.accepted = cy.name, st.name, request, now
  job.def = cy.def -- if the file goes away before the run starts
  if caller then
    caller.tx = job.tx
    job.caller, job.on_end = caller, caller.on_end
    if st.sync then
      caller.timeout = cy.def.sync_timeout
      caller.deadline = R.clock() + cy.def.sync_timeout
    end
  end
  return job
end

return A
