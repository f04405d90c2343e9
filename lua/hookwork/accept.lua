-- accept: turns a validated webhook request into jobs: a new transaction
-- (trigger), the next run of the waiting transaction(s) it matches (the
-- Webhook Mapping with its `pick` rule), or a request kept for later
-- (`early`), with the writes that make it durable queued.  Also answers
-- the status URLs of callers handed a 202 at sync_timeout.
--
-- Owns the overlay of waiting state that readers cannot see yet: parks,
-- run numbers, kept requests and their claims written but not committed.
-- Each entry carries the write sequence number it waits for and is dropped
-- as soon as the store has committed past it, so the overlay is as large as
-- the store's backlog of uncommitted writes, never more.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local C = require "hookwork.callers"
local Ans = require "hookwork.answers"
local core = R.core
local A = {}

-- Bounds (SPEC: nothing grows without bound).  Runs accepted and not yet
-- ended, per transaction; requests kept per match value; transactions one
-- `pick = "all"` request can resume; candidates read per lookup.
A.MAX_BACKLOG = R.cfg.max_backlog or 1000 -- HOOKWORK_MAX_BACKLOG
A.MAX_KEPT = R.cfg.max_kept or 1000       -- HOOKWORK_MAX_KEPT
A.MAX_ALL = 1000
local SCAN = 64

local S -- the overlay and counters (A.reset)

-- The next id of `kind` ("tx", "job", "hist", "early"): the store numbers
-- them (one counter per kind for every path that creates rows).
function A.next_id(kind) return core.next_id(kind) end

function A.reset()
  S = { parks = {},    -- key -> { [tx] = pos entry } parks not yet committed
        pos = {},      -- tx -> its newest uncommitted position (park or left)
        runs = {},     -- tx -> newest run number handed out, not committed
        early = {},    -- key -> { [id] = entry } kept requests not committed
        claimed = {},  -- early id -> true: taken by a park, delete pending
        fifo = {}, head = 1, tail = 0,
        backlog = {},  -- tx -> runs accepted and not ended
        kept = {}, dropped = {} } -- metrics: cycle\0step -> count
end
A.reset()

local function key_of(cycle, step, mv) return cycle .. "\0" .. step .. "\0" .. mv end

local function push(e)
  e.seq = core.progress()
  S.tail = S.tail + 1
  S.fifo[S.tail] = e
end

local function unlink(e)
  local m = e.key and S.parks[e.key]
  if m and m[e.tx] == e then
    m[e.tx] = nil
    if next(m) == nil then S.parks[e.key] = nil end
  end
end

-- Drops every entry whose write the store has committed (readers see it).
function A.gc()
  if S.head > S.tail then return end
  local _, done = core.progress()
  while S.head <= S.tail do
    local e = S.fifo[S.head]
    if e.seq > done then break end
    S.fifo[S.head] = nil
    S.head = S.head + 1
    if e.kind == "pos" then
      if S.pos[e.tx] == e then S.pos[e.tx] = nil end
      unlink(e)
    elseif e.kind == "run" then
      if S.runs[e.tx] == e then S.runs[e.tx] = nil end
    elseif e.kind == "early" then
      local p = S.early[e.key]
      if p and p[e.id] == e then
        p[e.id] = nil
        if next(p) == nil then S.early[e.key] = nil end
      end
    elseif e.kind == "claim" then
      S.claimed[e.id] = nil
    end
  end
  if S.head > S.tail then S.head, S.tail = 1, 0 end
end

-- Size of the overlay (tests of boundedness read it through the harness).
function A.overlay_size() return S.tail - S.head + 1 end

-- A run parked transaction `tx` at webhook `step` (tx_park just written).
function A.note_park(cycle, step, mv, tx, snap, exp, run, now)
  local old = S.pos[tx]
  if old then unlink(old) end
  local key = key_of(cycle, step, mv)
  local e = { kind = "pos", tx = tx, key = key, snapshot = snap, expires_at = exp,
              runs = run, parked_at = now }
  S.parks[key] = S.parks[key] or {}
  S.parks[key][tx] = e
  S.pos[tx] = e
  push(e)
end

-- Transaction `tx` waits nowhere any more (finished or expired), in a write
-- just queued.
function A.note_left(tx)
  local old = S.pos[tx]
  if old then unlink(old) end
  local e = { kind = "pos", tx = tx }
  S.pos[tx] = e
  push(e)
end

local function must(rows, err)
  if not rows then error("store: " .. tostring(err), 0) end
  return rows
end

-- The waiting transactions a value matches, in `pick` order: parks not yet
-- committed first merged in, transactions that have moved on (or ended) in
-- writes not yet committed left out, so an older candidate is still found.
local function candidates(cycle, step, mv, pick, clock)
  A.gc()
  local key = key_of(cycle, step, mv)
  local out, seen = {}, {}
  for tx, e in pairs(S.parks[key] or {}) do
    seen[tx] = true
    if not e.expires_at or e.expires_at > clock then
      out[#out + 1] = { id = tx, snapshot = e.snapshot, runs = e.runs,
                        parked_at = e.parked_at, pending = true }
    end
  end
  local oldest = pick == "oldest"
  local rows = must(core.query(oldest and "find_waiting_asc" or "find_waiting_desc",
                               cycle, step, mv, clock, pick == "all" and A.MAX_ALL or SCAN))
  for _, row in ipairs(rows) do
    if not seen[row.id] and not S.pos[row.id] then out[#out + 1] = row end
  end
  table.sort(out, function(a, b)
    if a.parked_at ~= b.parked_at then
      if oldest then return a.parked_at < b.parked_at end
      return a.parked_at > b.parked_at
    end
    if oldest then return a.id < b.id end
    return a.id > b.id
  end)
  return out
end

-- The next run number of a transaction: above every number handed out,
-- committed or not, and written to the row with the job so a restart
-- cannot hand it out again.
local function next_run(c)
  -- several nodes: the store hands the number out (other nodes resume too)
  if R.cfg.store == "postgres" then return require("hookwork.nodes").next_run(c.id) end
  local stored = c.runs or 0
  if c.pending then -- a park not yet committed: the row may know more
    local row = must(core.query("tx_runs", c.id))[1]
    if row and row.runs > stored then stored = row.runs end
  end
  local e = S.runs[c.id]
  local n = math.max(stored, e and e.n or 0) + 1
  core.write("tx_runs_bump", c.id, n)
  local ne = { kind = "run", tx = c.id, n = n }
  S.runs[c.id] = ne
  push(ne)
  return n
end

-- What the store keeps of a request (tx.request, rebuilt after a restart:
-- json is parsed again from the body): ops.lua keeps the body byte for
-- byte (base64 with body_encoding when it is not UTF-8) and when it came.
local function stored_request(r)
  return require("hookwork.ops").stored_request(r, R.now())
end

function A.request_of(text)
  local req = U.decode(text or "{}", "lax") or {}
  if req.body_encoding == "base64" and type(req.body) == "string" then -- see stored_request
    req.body, req.body_encoding = require("hookwork.crypto").b64_decode(req.body) or "", nil
  end
  if type(req.body) == "string" and type(req.headers) == "table" then
    local v, is_form, kind = require("hookwork.fields").parse_body(req) -- the stored body is decoded
    if kind == "json" then req.json = v elseif is_form then req.form = v end
  end
  return req
end

-- A job resuming candidate `c` at webhook `st` with the request's fields.
local function resume_job(cy, st, c, data, reqtext, now, req_write)
  local job = { tx = c.id, run = next_run(c) }
  if st.resume_with == "latest" then
    job.data, job.base = U.copy(data), "latest" -- merged when the run starts
  else
    job.data = U.merge(U.decode(c.snapshot or "{}", "lax") or {}, data)
  end
  job.id = A.next_id("job")
  -- a request's own write; a park delivering kept requests writes them as
  -- ordinary (kept) writes: the park and its deliveries commit together
  local write = req_write and core.write_req or core.write
  job.data_json = U.encode(job.data, "tx.data") -- the run starts from it too
  -- the run's request, kept after its job row (shown by the admin API)
  write("req_insert", job.tx, job.run, reqtext)
  job.seq = write("job_insert", job.id, job.tx, job.run, st.name, job.data_json, reqtext, job.base)
  S.backlog[c.id] = (S.backlog[c.id] or 0) + 1
  job.cycle, job.entry, job.accepted = cy.name, st.name, now
  job.def = cy.def
  return job
end

-- A run of `tx` ended (or will not happen): one less in its backlog.
function A.job_done(tx)
  local n = (S.backlog[tx] or 1) - 1
  S.backlog[tx] = n > 0 and n or nil
end

-- A job whose request write was dropped (its commit failed): it will not
-- run.  Its run number stays taken (a gap, never a duplicate).
function A.forget(job)
  if job.kind == "all" then
    for _, j in ipairs(job.jobs) do A.job_done(j.tx) end
  elseif job.id then
    A.job_done(job.tx)
  end
end

-- A job recovered at start counts in its transaction's backlog.
function A.job_recovered(tx) S.backlog[tx] = (S.backlog[tx] or 0) + 1 end

local function busy(id)
  return nil, Ans.busy(string.format("transaction %s has %d runs waiting; try again later",
                                     tostring(id), A.MAX_BACKLOG))
end

-- No transaction waits for this value and the webhook keeps requests:
-- kept durably for `early` seconds.
local function keep(cy, st, mv, data, reqtext, now)
  A.gc()
  local key = key_of(cy.name, st.name, mv)
  local n = must(core.query("early_count", cy.name, st.name, mv))[1].n
  for id in pairs(S.early[key] or {}) do if id then n = n + 1 end end
  if n >= A.MAX_KEPT then
    return nil, Ans.busy(string.format("%d requests with %s = %s are kept already; try again later",
                                       n, st.match.request, mv))
  end
  local e = { kind = "early", id = A.next_id("early"), key = key, data = data, request = reqtext,
              received = now, expires_at = R.clock() + st.early }
  local seq = core.write_req("early_insert", e.id, cy.name, st.name, mv, now, e.expires_at,
                             U.encode(data), reqtext)
  S.early[key] = S.early[key] or {}
  S.early[key][e.id] = e
  push(e)
  R.count(S.kept, cy.name .. "\0" .. st.name)
  return { kind = "buffered", cycle = cy.name, entry = st.name, seq = seq }
end

-- A transaction parks at `st` with value `mv`: the requests kept for it,
-- in arrival order, become its next runs (jobs, written now in the same
-- commit as the park; the caller starts them once it is durable).
function A.take_early(cy, st, mv, tx, snap, run, now)
  A.gc()
  local clock = R.clock()
  local key = key_of(cy.name, st.name, mv)
  local got, seen = {}, {}
  for id, e in pairs(S.early[key] or {}) do
    seen[id] = true
    if not S.claimed[id] and e.expires_at > clock then
      got[#got + 1] = { id = id, data = e.data, request = e.request }
    end
  end
  local rows = must(core.query("early_for", cy.name, st.name, mv, clock, A.MAX_BACKLOG))
  for _, r in ipairs(rows) do
    if not seen[r.id] and not S.claimed[r.id] then
      got[#got + 1] = { id = r.id, data = U.decode(r.data or "{}", "lax") or {}, request = r.request }
    end
  end
  if #got == 0 then return nil end
  table.sort(got, function(a, b) return a.id < b.id end)
  local jobs = {}
  local c = { id = tx, snapshot = snap, runs = run, pending = true }
  for _, g in ipairs(got) do
    core.write("early_delete", g.id)
    local ce = { kind = "claim", id = g.id }
    S.claimed[g.id] = true
    push(ce)
    local job = resume_job(cy, st, c, g.data, g.request, now)
    c.pending, c.runs = false, job.run
    job.request = A.request_of(g.request)
    jobs[#jobs + 1] = job
  end
  return jobs
end

-- Accepts a validated request for webhook step `st` of cycle `cy`: queues
-- the writes that make it durable and returns what to start (a job; or
-- {kind = "all", jobs}; or {kind = "buffered"}), or nil and a rejection
-- from the answers table: status, {error = message}, headers.  The caller commits before acknowledging.
function A.accept(cy, st, data, obj, request, caller, linked)
  local now = R.now()
  local job
  if st.index == 1 then
    local id = A.next_id("tx")
    job = { tx = id, run = 1, data = data, data_json = U.encode(data, "tx.data") }
    job.seq = core.write_req("tx_insert", id, cy.name, "running", st.name, job.data_json, now,
                             now, 1, linked and linked.cycle, linked and linked.id,
                             stored_request(request))
  else
    local m = st.match
    local v = U.get(data, m.request)
    if v == nil then v = U.get(obj, m.request) end
    if v == nil or type(v) == "table" then
      return nil, Ans.bad_request(string.format("field '%s': missing (it finds the waiting transaction)", m.request))
    end
    local mv = U.scalar_string(v)
    local cands = candidates(cy.name, st.name, mv, st.pick, R.clock())
    local reqtext = stored_request(request)
    if #cands == 0 then
      if st.early then return keep(cy, st, mv, data, reqtext, now) end
      return nil, Ans.not_found(string.format("no waiting transaction with %s = %s", m.request, mv))
    end
    if st.pick == "only" and #cands > 1 then
      return nil, Ans.conflict(string.format("%d transactions wait with %s = %s", #cands, m.request, mv))
    end
    if st.pick == "all" then
      for _, c in ipairs(cands) do
        if (S.backlog[c.id] or 0) >= A.MAX_BACKLOG then return busy(c.id) end
      end
      local jobs = {}
      for _, c in ipairs(cands) do
        local j = resume_job(cy, st, c, data, reqtext, now, true)
        j.request = request
        jobs[#jobs + 1] = j
      end
      return { kind = "all", jobs = jobs, cycle = cy.name, entry = st.name, seq = jobs[#jobs].seq }
    end
    local c = cands[1]
    if (S.backlog[c.id] or 0) >= A.MAX_BACKLOG then return busy(c.id) end
    job = resume_job(cy, st, c, data, reqtext, now, true)
  end
  job.cycle, job.entry, job.request, job.accepted = cy.name, st.name, request, now
  job.def = cy.def -- if the file goes away before the run starts
  if caller then
    caller.tx, caller.run = job.tx, job.run
    job.caller, job.on_end, job.on_pause = caller, caller.on_end, caller.on_pause
    if st.sync then
      caller.timeout = cy.def.sync_timeout
      caller.deadline = R.clock() + cy.def.sync_timeout
      if cy.def.on_sync_timeout == "accept" then
        caller.token = cy.hooks and cy.hooks[st.name] and cy.hooks[st.name].token
        caller.on_timeout = A.hand_over
      end
    end
  end
  return job
end

-- on_sync_timeout = "accept": the caller still waiting at sync_timeout
-- gets 202 with a status URL once a row for the run's answer is durable;
-- the run then writes its answer there instead of to the caller.
function A.hand_over(c)
  C.hand_over(c)
  local secret = core.token()
  local seq = core.write_req("sync_insert", c.tx, c.run, secret, c.token, R.now())
  core.spawn(function()
    local ok = core.commit(seq)
    if not ok then
      C.send(c, Ans.timeout(c.timeout, c.tx))
      return
    end
    local url = string.format("%s/hooks/%s/status/%s-%s", R.cfg.public_base, c.token,
                              tostring(c.tx), secret)
    C.send(c, Ans.handed_over(c.tx, url))
  end)
end

-- GET /hooks/TOKEN/status/ID-SECRET: the kept answer, or 202 running.
function A.status(r, caller, token, id, secret)
  if r.method ~= "GET" and r.method ~= "HEAD" then
    return C.send(caller, Ans.method_not_allowed(r.method, "GET, HEAD"))
  end
  local row = must(core.query("sync_get", math.tointeger(tonumber(id)) or -1, secret, token))[1]
  if not row then return C.send(caller, Ans.not_found("no such status")) end
  if row.state ~= "done" then return C.send(caller, Ans.status_running()) end
  local h = U.decode(row.headers or "{}", "lax") or {}
  C.answer(caller, math.tointeger(row.status) or 200, h.ctype, h.list, row.body or "")
end

-- Expiry: waiting transactions past their deadline, kept requests past
-- their window (deadlines on R.clock(), `clock`).  Both re-check in the
-- write itself.
function A.expire(clock)
  A.gc()
  local now = clock
  for _, row in ipairs(must(core.query("expired", clock))) do
    local p = S.pos[row.id]
    -- a run re-parked it since (write not yet committed): still waiting
    -- or its expiry is written already
    if not (p and (not p.key or not p.expires_at or p.expires_at > now)) then
      core.write("tx_expire", row.id, R.now(), clock)
      A.note_left(row.id)
    end
  end
  for _, row in ipairs(must(core.query("early_expired", clock))) do
    if not S.claimed[row.id] then
      core.write("early_delete", row.id)
      S.claimed[row.id] = true
      push({ kind = "claim", id = row.id })
      R.count(S.dropped, row.cycle .. "\0" .. row.step)
    end
  end
end

function A.metrics() return S.kept, S.dropped end

return A
