-- runtime: what the engine and the public API truly share, in one table:
-- the core functions, the configuration, the clocks, the registry of
-- cycles, connectors and tokens, and the metrics counters.  State one
-- module owns stays in that module, with a reset() the test harness calls
-- (callers: who waits; run: held and queued transactions; accept: the
-- uncommitted overlay and the ids; ops: waits, cancellations, retries;
-- loader: loaded files).
local core = require "hookwork.core"

local R = {
  core = core,
  cfg = core.config(),
  cycles = {},       -- name -> cycle record (see engine.lua)
  connectors = {},   -- name -> connector record
  tokens = {},       -- token -> hook record
  runs = setmetatable({}, { __mode = "k" }), -- coroutine -> run
  clock_offset = 0,  -- moved by t.advance in the test harness
  transport = nil,   -- replaces core.http in the test harness (mocks)
}

-- The counters the admin API's /metrics shows; callers, the door, runs and
-- outbound calls count into them.  R.reset_metrics(): all back to zero
-- (the test harness, between cycle files).
function R.reset_metrics()
  R.metrics = { webhook = {}, tasks = {}, outbound = {}, rejected = {}, latency = {} }
end
R.reset_metrics()

-- R.now(): the wall clock, for times that are stored or shown.
-- R.clock(): the clock that waits are measured on (sync_timeout, expires,
-- the pending-park map): the wall clock at start plus monotonic time since,
-- so stepping the system clock neither fires nor stalls a wait.  Stored
-- deadlines (expires_at) are on it too; it re-anchors at each start.
local wall0, mono0 = core.now(), core.mono()
function R.now() return core.now() + R.clock_offset end
function R.clock() return wall0 + (core.mono() - mono0) + R.clock_offset end

-- Counter helper: t[key] += n.
function R.count(t, key, n) t[key] = (t[key] or 0) + (n or 1) end

return R
