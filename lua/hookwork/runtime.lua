-- runtime: the state the engine and the public API share, in one table.
-- Nothing else in lua/ keeps mutable state at module level.
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
  metrics = { webhook = {}, tasks = {}, outbound = {}, rejected = {},
              latency = {} },
}

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
