-- retain: the background purge of old finished transactions (the cycle's
-- `keep`, days per state).  Candidates are found on the reader thread;
-- each batch is one small write (the transactions, then their history and
-- requests) that rides with the ordinary group commit, so webhooks never
-- wait behind a long delete.  SQLite puts the freed pages on its freelist
-- and new rows reuse them: under steady load the file stops growing
-- (auto_vacuum stays off: moving pages back would only cost writes).
local R = require "hookwork.runtime"
local core = R.core
local T = {}

-- HOOKWORK_KEEP_UNIT_SECONDS: the length of a `keep` "day" in seconds
-- (86400; tests set 1 so keep counts seconds).
T.UNIT = tonumber(os.getenv("HOOKWORK_KEEP_UNIT_SECONDS") or "") or 86400
T.BATCH = 500
T.EVERY = math.min(5, math.max(0.2, T.UNIT / 4)) -- seconds between passes when idle
-- Where ids do not follow time (PostgreSQL, search.lua) an idle pass reads
-- every finished row of each (cycle, state) — ~60 ms per pair with 500,000
-- rows — so it runs at most once a minute (still within a quarter of a
-- `keep` unit): a purge may come up to a minute late, never early.
T.EVERY_SCAN = math.min(60, math.max(0.2, T.UNIT / 4))
-- Statements other modules add (a dedupe table, say), each called with
-- (ids JSON) after the transactions are deleted: it must delete only rows
-- whose transaction is gone.
T.extra = {}

local DEFAULT = { completed = 14, failed = 30, expired = 14, cancelled = 14 }
local ORDER = { "completed", "failed", "expired", "cancelled" }
local state = { busy = false, last = 0, more = false, deleted = 0 }

-- The candidates of one batch: the same SQL on SQLite and PostgreSQL (the
-- reader writes ?N as $N there; each value's type follows from its column).
local CANDIDATES = "SELECT id FROM tx WHERE cycle = ?1 AND state = ?2"
  .. " AND id <= ?3 AND updated < ?4 ORDER BY id LIMIT ?5"

-- One batch of (cycle, state) older than cutoff; returns the number deleted.
local function batch(cycle, st, cutoff, maxid)
  local rows = require("hookwork.search").rows(CANDIDATES, cycle, st, maxid, cutoff, T.BATCH)
  if #rows == 0 then return 0 end
  local ids = {}
  for i, r in ipairs(rows) do ids[i] = r.id end
  local list = "[" .. table.concat(ids, ",") .. "]"
  core.write("purge_tx", list, st, cutoff)
  core.write("purge_hist", list)
  core.write("purge_req", list)
  core.write("purge_dedupe", list)
  for _, name in ipairs(T.extra) do core.write(name, list) end
  local ok = core.commit() -- one batch at a time: the writer is never swamped
  if not ok then return 0 end
  return #rows
end

local function pass(now)
  local S = require "hookwork.search"
  local maxid = S.rows(S.Q.sqlite.MAXID)[1].m -- portable
  -- ids bound the candidates only where they follow time (search.lua)
  local by_id = S.Q.get().ids_follow_time
  if maxid == 0 then return false end
  local below = {} -- cutoff -> last id created before it
  local more = false
  local names = {}
  for name in pairs(R.cycles) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local cy = R.cycles[name]
    local keep = cy and cy.def and cy.def.keep or DEFAULT
    for _, st in ipairs(ORDER) do
      local days = keep[st] or DEFAULT[st]
      if days < math.huge then
        local cutoff = now - days * T.UNIT
        if below[cutoff] == nil then
          local first = by_id and S.id_at(cutoff, maxid)
          below[cutoff] = first and first - 1 or maxid
        end
        if below[cutoff] > 0 then
          local n = batch(name, st, cutoff, below[cutoff])
          state.deleted = state.deleted + n
          if n >= T.BATCH then more = true end
        end
      end
    end
  end
  return more
end

-- Called every engine tick: starts a pass when one is due (at once again
-- while a backlog remains).
function T.tick(now)
  if state.busy then return end
  local every = require("hookwork.search").Q.get().ids_follow_time and T.EVERY or T.EVERY_SCAN
  if not state.more and now - state.last < every then return end
  state.busy, state.last = true, now
  core.spawn(function()
    local ok, more = pcall(pass, now)
    if not ok then core.log("retain", tostring(more)) end
    state.more = ok and more or false
    state.busy = false
  end)
end

function T.deleted() return state.deleted end

return T
