-- nodes: several engines on one PostgreSQL store.  Active only when the
-- store is postgres (R.cfg.store); on SQLite every function here is a
-- no-op and nothing is read or written.
--
-- Owns: this node's lease (the `nodes` row, renewed every lease/3 s), the
-- scan for nodes whose lease ran out and the takeover of their unfinished
-- runs, the claim that keeps runs of one transaction from overlapping
-- across nodes (the transaction's `runner` column, claimed while this node
-- runs or holds it), and the polling that makes other nodes' changes
-- (cycle start/stop, connector PUT, cancellations) visible here.
-- Uses: the store's query statements of store_sql_pg.h (node_*, takeover_*,
-- tx_run_claim, tx_run_release, tx_runs_next, tx_cancelled_among,
-- hook_claim), run.lua (which transactions are held), ops.lua (cancel
-- marks, retry waits), loader.lua (states and overrides) and recovery.lua
-- (how a stored run is started).
--
-- Takeover: every node scans the nodes table about once a second; for a
-- node whose lease ran out, one statement deletes its row and re-owns its
-- running transactions and its jobs to "TAKER+DEAD" (so exactly one live
-- node wins, and the dead node, should it come back, finds its row gone and
-- exits).  The taker then pages through those rows in arrival order (first
-- runs by id, then resumes by id) and starts each as recovery does: steps
-- that completed before the dead node's last checkpoint do not run again,
-- a step waiting for its next attempt keeps its retry_at.
local R = require "hookwork.runtime"
local core = R.core
local N = {}

-- Seconds between polls of other nodes' changes and between scans for
-- dead nodes; taken-over rows read at a time and runs of them in flight.
N.POLL, N.SCAN = 0.3, 1.0
local PAGE, LIMIT = 200, 500

local S -- this node's state (N.reset)

function N.reset()
  S = { lease_until = nil, next_renew = 0, next_scan = 0, next_poll = 0,
        nodes = {},      -- name -> {lease_until, dead} as of the last scan
        sweeper = false, -- whether this node runs the periodic sweeps
        passes = {},     -- takeover passes under way
        inflight = 0,    -- taken-over runs running now
        locks = {},      -- tx id -> the runner token this node holds it with
        sleepers = {},   -- runs waiting for the next tick (N.sleep)
        pending = {},    -- "cycle\0name" / "conn\0name" -> write seq not yet durable
        conn_text = {},  -- connector name -> allowed_ips text as last seen
        warned = 0, taken = 0, takeover_log = {} }
end
N.reset()

function N.on() return R.cfg.store == "postgres" end

local function must(rows, err, what)
  if not rows then error((what or "store") .. ": " .. tostring(err), 0) end
  return rows
end

-- ---------------------------------------------------------------- lease

-- This node's lease could not be renewed because another node has taken
-- its work over (it was presumed dead): going on would run steps twice.
local function lost(why)
  core.fatal(string.format("node '%s': %s; exiting so that no run executes on two nodes",
                           R.cfg.node, why))
end

local function renew(clock)
  local rows, err = core.query("node_renew", R.cfg.node, R.cfg.lease)
  if not rows then
    -- the store is unreachable: nobody can take the node over either;
    -- say so, at most every 10 s, and keep trying
    if clock - S.warned >= 10 then
      S.warned = clock
      core.log("nodes", "cannot renew the lease: " .. tostring(err))
    end
    return
  end
  if not rows[1] then
    lost("its lease was taken over by another node")
  end
  S.lease_until = clock + R.cfg.lease
end

-- ---------------------------------------------------------------- takeover

local function pass_fill(p)
  local name = p.phase == "tx" and "takeover_tx" or "takeover_jobs"
  local list = must(core.query(name, p.marker, p.after, PAGE))
  local last = list[#list]
  if last then p.after = last.id end
  for _, j in ipairs(list) do j.kind = p.phase end
  if #list < PAGE then
    if p.phase == "tx" then p.phase, p.after = "jobs", 0 else p.phase = "end" end
  end
  p.buf, p.pos = list, 1
end

local function pass_next(p)
  while p.pos > #p.buf do
    if p.phase ~= "tx" and p.phase ~= "jobs" then return nil end
    pass_fill(p)
  end
  local j = p.buf[p.pos]
  p.buf[p.pos] = false
  p.pos = p.pos + 1
  if j.kind == "tx" then j.tx, j.id, j.run = j.id, nil, j.runs or 1 end
  return j
end

-- Starts taken-over runs, at most LIMIT at a time (a tick, and the end of
-- each of them).
local function feed()
  if S.feeding or core.stopping() ~= 0 then return end
  S.feeding = true
  local ok, err = pcall(function()
    while S.passes[1] and S.inflight < LIMIT do
      local p = S.passes[1]
      local j = pass_next(p)
      if not j then
        table.remove(S.passes, 1)
        local ms = math.floor((R.clock() - p.t0) * 1000 + 0.5)
        core.log("nodes", string.format("took over %d runs of node '%s' (%d ms after the claim)",
                                        p.n, p.dead, ms))
        S.takeover_log[#S.takeover_log + 1] = { node = p.dead, runs = p.n, claimed = p.claimed_at }
      else
        p.n = p.n + 1
        S.taken = S.taken + 1
        local started = require("hookwork.recovery").start_row(j, function()
          S.inflight = S.inflight - 1
          if S.inflight < LIMIT / 2 then feed() end
        end)
        if started then S.inflight = S.inflight + 1 end
      end
    end
  end)
  S.feeding = false
  if not ok then core.log("nodes", "takeover: " .. tostring(err)) end
end

local function claim(dead)
  local marker = R.cfg.node .. "+" .. dead
  local rows, err = core.query("node_takeover", dead, R.cfg.node)
  if not rows then
    core.log("nodes", string.format("takeover of node '%s': %s", dead, tostring(err)))
    return
  end
  local r = rows[1]
  if not r or (r.claimed or 0) == 0 then return end -- another node was first
  core.log("nodes", string.format("node '%s' stopped renewing its lease: taking over its %d first runs and %d resumes",
                                  dead, r.txs or 0, r.jobs or 0))
  S.passes[#S.passes + 1] = { dead = dead, marker = marker, phase = "tx", after = 0,
                              buf = {}, pos = 1, n = 0, t0 = R.clock(), claimed_at = R.now() }
  feed()
end

-- Reads the nodes table: who lives, who runs the sweeps (the live node
-- with the smallest name), and who has died (their lease ran out).
local function scan()
  local rows = core.query("nodes_list")
  if not rows then return end -- the store is unreachable: renew() says so
  local nodes, first = {}, nil
  local dead = {}
  for _, r in ipairs(rows) do
    nodes[r.name] = { lease_until = r.lease_until, dead = r.dead == 1 }
    if r.dead ~= 1 and (not first or r.name < first) then first = r.name end
    if r.dead == 1 and r.name ~= R.cfg.node then dead[#dead + 1] = r.name end
  end
  S.nodes = nodes
  local was = S.sweeper
  S.sweeper = first == nil or first == R.cfg.node
  if S.sweeper and not was then
    core.log("nodes", string.format("node '%s' runs the sweeps (expiry, early windows, dedupe purge, retention)",
                                    R.cfg.node))
  end
  for _, name in ipairs(dead) do claim(name) end
end

-- ---------------------------------------------------------------- changes

-- A change this node made and wrote (cycle state, connector override):
-- what the store still shows is older until that write is durable.
function N.touched(kind, name)
  if not N.on() then return end
  local written = core.progress()
  S.pending[kind .. "\0" .. name] = written
end

local function is_pending(kind, name)
  local seq = S.pending[kind .. "\0" .. name]
  if not seq then return false end
  local _, done = core.progress()
  if done >= seq then S.pending[kind .. "\0" .. name] = nil return false end
  return true
end

local function poll_cycles()
  local L = require "hookwork.loader"
  local rows = core.query("cycles_all")
  if not rows then return end
  local changed = false
  for _, r in ipairs(rows) do
    if L.states[r.name] ~= r.state and not is_pending("cycle", r.name) then
      L.states[r.name] = r.state
      local cy = R.cycles[r.name]
      if cy and cy.def then
        cy.state, changed = r.state, true
        core.log("nodes", string.format("cycle '%s' %s (by another node)", r.name, r.state))
      end
    end
  end
  if changed then L.sync_hooks() end -- the C accept path's copy
end

local function poll_connectors()
  local L = require "hookwork.loader"
  local U = require "hookwork.util"
  local rows = core.query("connectors_all")
  if not rows then return end
  local seen, changed, gone = {}, false, false
  for _, r in ipairs(rows) do
    seen[r.name] = true
    local ov = L.overrides[r.name]
    local cur = S.conn_text[r.name] or (ov and U.encode(ov.list))
    if cur ~= r.allowed_ips and not is_pending("conn", r.name) then
      local list = U.decode(r.allowed_ips, "lax") or {}
      local filter = core.ipfilter(list)
      if filter then
        L.overrides[r.name] = { list = list, filter = filter, file_sig = r.file_sig }
        local c = R.connectors[r.name]
        if c then c.allowed_ips, c.filter, c.override, changed = list, filter, true, true end
        core.log("nodes", string.format("connector '%s' allowed_ips set (by another node)", r.name))
      end
    end
    S.conn_text[r.name] = r.allowed_ips
  end
  for name in pairs(L.overrides) do
    if not seen[name] and not is_pending("conn", name) then
      -- the override is gone (its file was saved since): the file's list
      L.overrides[name], S.conn_text[name] = nil, nil
      gone = true
    end
  end
  if gone then
    L.rebuild() -- (syncs the C accept path too)
  elseif changed then
    L.sync_hooks() -- the C accept path's copy
  end
end

-- Transactions this node holds or has queued that another node cancelled:
-- marked here as a local cancel would (a running run stops at its next
-- yield, a step waiting for its next attempt ends, queued runs end).
local function poll_cancels()
  local ids = require("hookwork.run").held_ids()
  if #ids == 0 then return end
  local O = require "hookwork.ops"
  for i = 1, #ids, 500 do
    local part = table.move(ids, i, math.min(i + 499, #ids), 1, {})
    local rows = core.query("tx_cancelled_among", "[" .. table.concat(part, ",") .. "]")
    for _, r in ipairs(rows or {}) do
      if not O.is_cancelled(r.id) then O.mark_cancelled(r.id, R.now(), "by another node") end
    end
  end
end

-- ---------------------------------------------------------------- runs

-- Waits until this node holds transaction `id` across nodes: its row's
-- `runner` names this node (NAME#N, N new for each claim, so a release
-- still on its way to the store never clears a later claim).  A runner
-- whose node has gone from the nodes table (taken over) holds nothing.
-- Meanwhile a run of it may be going on another node: this one waits its
-- turn, trying again every tick.  Called in the run's coroutine, with the
-- transaction held here (run.lua's active).
function N.lock(id)
  if not N.on() or S.locks[id] then return end
  local logged = false
  while true do
    S.claims = (S.claims or 0) + 1
    local token = R.cfg.node .. "#" .. S.claims
    local rows, err = core.query("tx_run_claim", id, token)
    local r = rows and rows[1]
    if r and r.state then
      S.locks[id] = token
      if r.state == "cancelled" then -- by another node, not heard of yet
        local O = require "hookwork.ops"
        if not O.is_cancelled(id) then O.mark_cancelled(id, R.now(), "by another node") end
      end
      return
    end
    if r and r.present == 0 then return end -- no such transaction (any more)
    if not logged then
      logged = true
      if r then
        core.log("nodes", string.format("transaction %d: a run of it goes on at %s; this one waits",
                                        id, tostring(r.runner or "another node")))
      else
        core.log("nodes", string.format("transaction %d: %s", id, tostring(err)))
      end
    end
    if require("hookwork.ops").is_cancelled(id) then return end
    N.sleep()
  end
end

-- Suspends the calling run until the next engine tick (100 ms).
function N.sleep()
  S.sleepers[#S.sleepers + 1] = coroutine.running()
  core.wait()
end

-- Transaction `id` is no longer held here (no run, no wait, nothing
-- queued): the claim is cleared in a write after this node's writes so
-- far, so the next node's run starts from what this one's runs wrote.
function N.release(id)
  if not N.on() then return end
  local token = S.locks[id]
  if not token then return end
  S.locks[id] = nil
  core.write("tx_run_release", id, token)
end

-- The next run number of transaction `id`, taken in the store at once (two
-- nodes resuming one transaction never hand out the same number).
function N.next_run(id)
  local rows, err = core.query("tx_runs_next", id)
  if not rows then error("store: " .. tostring(err), 0) end
  if not rows[1] then error(string.format("store: transaction %d is gone", id), 0) end
  return rows[1].runs
end

-- The webhook token of (cycle, step): `tok` unless another node stored
-- one first (the same URL on every node).
function N.hook_token(cycle, step, tok)
  local rows, err = core.query("hook_claim", cycle, step, tok)
  must(rows, err)
  return rows[1] and rows[1].token or tok
end

-- ---------------------------------------------------------------- entry points

-- Start-up, before recovery: this node's lease.
function N.start()
  if not N.on() then return end
  -- (NAME+DEAD marks rows taken over, NAME#N a transaction's runner)
  if R.cfg.node == "" or R.cfg.node:find("[+#]") then
    error(string.format("--node '%s': a node name must be non-empty, without '+' or '#'", R.cfg.node), 0)
  end
  local rows, err = core.query("node_join", R.cfg.node, R.cfg.lease)
  must(rows, err, "node '" .. tostring(R.cfg.node) .. "'")
  S.lease_until = R.clock() + R.cfg.lease
  S.next_renew = R.clock() + R.cfg.lease / 3
  for name, ov in pairs(require("hookwork.loader").overrides) do
    S.conn_text[name] = require("hookwork.util").encode(ov.list)
  end
  core.log("nodes", string.format("node '%s' joined (lease %g s)", R.cfg.node, R.cfg.lease))
  S.next_scan = R.clock() + N.SCAN
  scan() -- who sweeps, before the first tick's sweeps
end

-- Every engine tick (100 ms).
function N.tick(clock)
  if not N.on() then return end
  if clock >= S.next_renew then
    S.next_renew = clock + R.cfg.lease / 3
    renew(clock)
  end
  if clock >= S.next_scan then
    S.next_scan = clock + N.SCAN
    scan()
  end
  if clock >= S.next_poll then
    S.next_poll = clock + N.POLL
    local ok, err = pcall(function()
      poll_cycles()
      poll_connectors()
      poll_cancels()
    end)
    if not ok then core.log("nodes", "poll: " .. tostring(err)) end
  end
  local w = S.sleepers
  if #w > 0 then
    S.sleepers = {}
    for _, co in ipairs(w) do core.wake(co) end
  end
  feed()
end

-- Whether this node runs the periodic sweeps (expiry, early windows,
-- dedupe purge, retention): on SQLite always; on PostgreSQL the live node
-- with the smallest name, so they never act twice.
function N.sweeper()
  if not N.on() then return true end
  return S.sweeper
end

-- For /metrics: this node's name (the `node` label), or nil on SQLite.
function N.label()
  if not N.on() then return nil end
  return R.cfg.node
end

function N.takeovers() return S.takeover_log end

return N
