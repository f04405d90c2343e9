-- recovery: after a restart, the runs the store still holds (first runs
-- whose transaction is still 'running', resumes still in jobs) run again,
-- in arrival order (first runs by id, then resumes by id; per transaction
-- that is the order they came in), read a page at a time, with at most
-- LIMIT of them in flight.  So the engine serves at once and memory stays
-- bounded whatever the backlog; each page is read in its own protected call
-- (a tick, or the end of a recovered run), never all under one budget.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local M = require "hookwork.run"
local A = require "hookwork.accept"
local O = require "hookwork.ops"
local core = R.core

local V = {}
-- PAGE rows read at a time, at most LIMIT runs in flight, and no new ones
-- while more than QUEUE writes wait for the writer: the backlog must not
-- queue ahead of new requests' commits.
local PAGE, LIMIT, QUEUE = 500, 1000, 2000
local st = { phase = "done" }

-- Only rows that existed at start: later ones belong to live runs.
function V.start(max_tx, max_job)
  st = { phase = "tx", after = 0, max_tx = max_tx, max_job = max_job, buf = {}, pos = 1,
         inflight = 0, n = 0, t0 = R.now() }
end

local function rows(name, after)
  local list, err = core.query(name, after, PAGE)
  if not list then error("store: " .. tostring(err), 0) end
  return list
end

-- Reads the next page of the current phase into st.buf.
local function fill()
  local name, max, kind = "recover_tx", st.max_tx, "tx"
  if st.phase == "jobs" then name, max, kind = "recover_jobs", st.max_job, "job" end
  local list = rows(name, st.after)
  local last = list[#list]
  if last then st.after = last.id end
  for _, j in ipairs(list) do j.kind = j.id <= max and kind or nil end
  if #list < PAGE or last.id > max then -- this phase is done
    if st.phase == "tx" then st.phase, st.after = "jobs", 0 else st.phase = "end" end
  end
  st.buf, st.pos = list, 1
end

-- The next stored run, or nil when the backlog is done.
local function next_row()
  while true do
    while st.pos > #st.buf do
      if st.phase ~= "tx" and st.phase ~= "jobs" then return nil end
      fill()
    end
    local j = st.buf[st.pos]
    st.buf[st.pos] = false
    st.pos = st.pos + 1
    if j.kind == "tx" then -- a first run: the row is the transaction
      j.tx, j.id, j.run = j.id, nil, j.runs or 1 -- a retried one is on a later run
      return j
    elseif j.kind == "job" then
      return j
    end -- rows newer than the start belong to live runs
  end
end

local function job_of(j)
  if j.id then A.job_recovered(j.tx) end -- counts in its transaction's backlog
  -- the stored body is decoded, and byte-exact (ops.load_request)
  return { id = j.id, tx = j.tx, run = j.run, cycle = j.cycle, entry = j.entry,
           ckpt_step = j.ckpt_step, data = U.decode(j.ckpt_data or j.data or "{}", "lax") or {},
           base = j.base, request = O.load_request(j.request), attempt = j.attempt,
           retry_at = j.retry_at }
end

local function recovered()
  st.inflight = st.inflight - 1
  if st.inflight < LIMIT / 2 then V.feed() end
end

-- Starts one stored run (a row of recover_tx / recover_jobs, or of a dead
-- node's taken over by nodes.lua): a job of a cancelled transaction is
-- deleted, a step waiting for its next attempt goes back on the timer
-- list, anything else runs, and done() is called when it has ended.
-- Returns true when a run was started (it counts as in flight).
function V.start_row(j, done)
  if j.state == "cancelled" then
    if j.id then core.write("job_delete", j.id) end -- its transaction was cancelled
    return false
  elseif j.retry_at and not M.is_active(j.tx) then
    -- a step waiting for its next attempt: the countdown goes on
    M.hold(j.tx)
    O.wait(job_of(j), j.retry_at)
    return false
  end
  core.spawn(function(job)
    M.run_job(job)
    done()
  end, job_of(j))
  return true
end

-- Tops the runs in flight up to LIMIT (a tick, and the end of a run).
function V.feed()
  if st.phase == "done" or st.feeding or core.stopping() ~= 0 then return end
  st.feeding = true
  local ok, err = pcall(function()
    while st.inflight < LIMIT and core.store_pending() < QUEUE do
      local j = next_row()
      if not j then
        st.phase = "done"
        if st.n > 0 then
          core.log("engine", string.format("recovered %d unfinished runs in %.1f s", st.n,
                                           R.now() - st.t0))
        end
        break
      end
      st.n = st.n + 1
      if V.start_row(j, recovered) then st.inflight = st.inflight + 1 end
    end
  end)
  st.feeding = false
  if not ok then core.log("engine", "recovery: " .. tostring(err)) end
end

function V.pending() return st.phase ~= "done" end

return V
