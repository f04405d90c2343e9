-- search: the admin reads of stored transactions, as SQL run on the
-- reader thread (core.aquery), never on the loop: one transaction with its
-- history and requests, listing with filters and cursor paging, counts.
-- JSON is built by SQLite there; the loop only passes the text on.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local core = R.core
local S = {}

-- Rows of a read on the reader thread; a store error is raised as one
-- message (the caller's pcall turns it into a 500 or a log line).
function S.rows(sql, ...)
  local rows, err = core.aquery(sql, ...)
  if not rows then error("store: " .. tostring(err), 0) end
  return rows
end

local function iso(col) return "strftime('%Y-%m-%dT%H:%M:%fZ', " .. col .. ", 'unixepoch')" end

-- A stored request as the admin API shows it (?1 in the enclosing query is
-- the list of redacted header names, a JSON array).
local function request_view(col)
  return "CASE WHEN " .. col .. " IS NULL THEN NULL ELSE json_object("
    .. "'method', " .. col .. " ->> 'method', 'path', " .. col .. " ->> 'path',"
    .. " 'query', json(coalesce(" .. col .. " -> 'query', '{}')),"
    .. " 'headers', (SELECT coalesce(json_group_object(h.key, CASE WHEN lower(h.key) IN"
    .. " (SELECT value FROM json_each(?2)) THEN '[redacted]' ELSE h.value END), '{}')"
    .. " FROM json_each(" .. col .. ", '$.headers') h),"
    .. " 'body', coalesce(" .. col .. " ->> 'body', ''),"
    .. " 'body_encoding', coalesce(" .. col .. " ->> 'body_encoding', 'utf-8'),"
    .. " 'ip', " .. col .. " ->> 'ip',"
    .. " 'received', " .. iso("(" .. col .. " ->> 'received')") .. ") END"
end

local GET_SQL = "SELECT json_object('id', CAST(id AS TEXT),"
  .. " 'cycle', cycle, 'state', state, 'step', step,"
  .. " 'data', json(coalesce(data, '{}')), 'runs', runs, 'match', match_value,"
  .. " 'error', error, 'created', " .. iso("created") .. ","
  .. " 'updated', " .. iso("updated") .. ","
  .. " 'expires', CASE WHEN expires_at IS NULL OR state != 'waiting' THEN NULL ELSE "
  .. iso("expires_at") .. " END,"
  .. " 'retry_at', CASE WHEN retry_at IS NULL THEN NULL ELSE " .. iso("retry_at") .. " END,"
  .. " 'attempt', attempt,"
  .. " 'replay_of', CAST(replay_of AS TEXT),"
  .. " 'linked_from', CASE WHEN linked_cycle IS NULL THEN NULL ELSE"
  .. " json_object('cycle', linked_cycle, 'id', CAST(linked_id AS TEXT),"
  .. " 'transaction', CAST(linked_id AS TEXT)) END,"
  .. " 'request', " .. request_view("tx.request") .. ","
  .. " 'requests', (SELECT coalesce(json_group_array(json(v)), '[]') FROM (SELECT "
  .. request_view("r.request") .. " AS v FROM req r WHERE r.tx = ?1 ORDER BY r.run)),"
  .. " 'history', (SELECT coalesce(json_group_array(json_object("
  .. "'step', v ->> 0, 'run', run, 'started', " .. iso("(v ->> 1) / 1000.0") .. ","
  .. " 'ended', " .. iso("(v ->> 2) / 1000.0") .. ", 'status', v ->> 3,"
  .. " 'error', v ->> 4, 'note', v ->> 5)), '[]') FROM (SELECT h.run,"
  .. " e.value AS v FROM hist h, json_each(h.entries) e WHERE h.tx = ?1"
  .. " ORDER BY h.seq, e.key))) AS j FROM tx WHERE id = ?1"

-- One transaction as JSON text, or nil.
function S.get(id)
  local rows = S.rows(GET_SQL, id, require("hookwork.ops").redacted())
  return rows[1] and rows[1].j
end

S.STATES = { running = true, waiting = true, completed = true, failed = true,
             expired = true, cancelled = true }

-- Times in filters: unix seconds or ISO 8601 (UTC; "Z" or no zone).
function S.parse_time(s)
  local n = tonumber(s)
  if n then return n end
  local y, mo, d, h, mi, sec = tostring(s):match("^(%d%d%d%d)-(%d%d)-(%d%d)[T ]?(%d?%d?):?(%d?%d?):?([%d%.]*)Z?$")
  if not y then return nil end
  local days = (function(yy, mm, dd) -- days since 1970-01-01 (civil calendar)
    yy = mm <= 2 and yy - 1 or yy
    local era = (yy >= 0 and yy or yy - 399) // 400
    local yoe = yy - era * 400
    local doy = (153 * (mm + (mm > 2 and -3 or 9)) + 2) // 5 + dd - 1
    local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
  end)(tonumber(y), tonumber(mo), tonumber(d))
  return days * 86400 + (tonumber(h) or 0) * 3600 + (tonumber(mi) or 0) * 60 + (tonumber(sec) or 0)
end

-- `q=PATH=VALUE`: a JSON path for SQLite from a dotted one ("customer.email",
-- "items.0.sku"), or nil when a key cannot be written safely.
local function json_path(p)
  local out = { "$" }
  for part in p:gmatch("[^%.]+") do
    if part:match("^%d+$") then
      out[#out + 1] = "[" .. part .. "]"
    elseif part:find('["\\]') then
      return nil
    else
      out[#out + 1] = '."' .. part .. '"'
    end
  end
  if #out == 1 then return nil end
  return table.concat(out)
end

-- The forms a value may take in stored JSON: as a string, and as itself
-- when it is a JSON scalar (5, true, null).
local function json_forms(v)
  local as_string = U.encode(v)
  local raw = v
  if not (v == "true" or v == "false" or v == "null" or v:match("^%-?%d+%.?%d*[eE]?[%-+]?%d*$")) then
    raw = as_string
  end
  return as_string, raw
end

-- How many rows a page examines at most when it pages (?page=1) with a
-- filter no index serves: each page stays fast on any store; `next` then
-- carries on from where the scan stopped.
S.SCAN_WINDOW = 100000

-- Parses the query string; returns the filter or nil, message.
function S.filter(q)
  local f = { limit = 100 }
  if q.limit and q.limit ~= "" then
    f.limit = math.tointeger(tonumber(q.limit))
    if not f.limit or f.limit < 1 then return nil, "limit must be a positive integer" end
    if f.limit > 10000 then f.limit = 10000 end
  end
  if q.state and q.state ~= "" then
    if not S.STATES[q.state] then
      return nil, "state must be one of running, waiting, completed, failed, expired, cancelled"
    end
    f.state = q.state
  end
  for _, k in ipairs({ "cycle", "step", "match" }) do
    if q[k] and q[k] ~= "" then f[k] = q[k] end
  end
  for _, k in ipairs({ "since", "until" }) do
    if q[k] and q[k] ~= "" then
      f[k == "until" and "before" or k] = S.parse_time(q[k])
      if not f[k == "until" and "before" or k] then return nil, k .. ": expected unix seconds or an ISO 8601 time" end
    end
  end
  if q.q and q.q ~= "" then
    local path, value = q.q:match("^([^=]+)=(.*)$")
    local jp = path and json_path(path)
    if not jp then return nil, "q: expected PATH=VALUE, e.g. q=customer.email=a@b.c" end
    f.qpath, f.qstr, f.qraw = jp, json_forms(value)
  end
  if q.cursor and q.cursor ~= "" then
    f.cursor = math.tointeger(tonumber(q.cursor))
    if not f.cursor or f.cursor < 1 then return nil, "cursor: expected the 'next' of an earlier page" end
  end
  f.page = q.page == "1" or q.page == "true"
  return f
end

-- The smallest id created at or after t (ids grow with time), by binary
-- search on the primary key: a time range costs ~20 lookups, not a scan.
function S.id_at(t, hi)
  local lo, found = 1, nil
  while lo <= hi do
    local mid = (lo + hi) // 2
    local row = S.rows("SELECT id, created FROM tx WHERE id >= ?1 ORDER BY id LIMIT 1", mid)[1]
    if not row then hi = mid - 1
    elseif row.created >= t then found, hi = row.id, mid - 1
    else lo = row.id + 1 end
  end
  return found
end

-- Lists transactions newest first; returns the JSON text of the array and
-- the next cursor (or nil).
function S.list(f)
  local where, args = {}, {}
  local function arg(v) args[#args + 1] = v; return "?" .. #args end
  if f.cycle then where[#where + 1] = "cycle = " .. arg(f.cycle) end
  if f.state then where[#where + 1] = "state = " .. arg(f.state) end
  if f.step then where[#where + 1] = "step = " .. arg(f.step) end
  if f.match then where[#where + 1] = "match_value = " .. arg(f.match) end
  if f.qpath then
    where[#where + 1] = string.format("(data -> %s) IN (%s, %s)", arg(f.qpath), arg(f.qstr), arg(f.qraw))
  end
  local maxid = S.rows("SELECT coalesce(max(id), 0) AS m FROM tx")[1].m
  local hi = f.cursor and f.cursor - 1 or maxid
  local lo = 1
  if f.since then
    where[#where + 1] = "created >= " .. arg(f.since)
    lo = S.id_at(f.since, maxid) or (maxid + 1)
  end
  if f.before then
    where[#where + 1] = "created < " .. arg(f.before)
    local first_after = S.id_at(f.before, maxid)
    if first_after and first_after - 1 < hi then hi = first_after - 1 end
  end
  -- a bounded window when paging with a filter no index serves
  local indexed = f.match or (f.cycle and f.state)
  local window_lo = lo
  if f.page and not indexed and hi - lo + 1 > S.SCAN_WINDOW then window_lo = hi - S.SCAN_WINDOW + 1 end
  where[#where + 1] = "id BETWEEN " .. arg(window_lo) .. " AND " .. arg(hi)
  local sql = "SELECT id, json_object('id', CAST(id AS TEXT), 'cycle', cycle, 'state', state,"
    .. " 'step', step, 'match', match_value, 'runs', runs,"
    .. " 'created', " .. iso("created") .. ", 'updated', " .. iso("updated") .. ") AS j"
    .. " FROM tx WHERE " .. table.concat(where, " AND ")
    .. " ORDER BY id DESC LIMIT " .. arg(f.limit + 1)
  local rows = S.rows(sql, table.unpack(args))
  local parts, nxt = {}, nil
  for i = 1, math.min(#rows, f.limit) do parts[i] = rows[i].j end
  if #rows > f.limit then
    nxt = rows[f.limit].id
  elseif window_lo > lo then
    nxt = window_lo -- the window ended before the range did: carry on below it
  end
  return "[" .. table.concat(parts, ",") .. "]", nxt
end

-- Ids of failed transactions for a bulk retry (at most `limit`).
function S.failed_ids(cycle, step, since, limit)
  local rows = S.rows("SELECT id FROM tx WHERE state = 'failed'"
    .. " AND (?1 IS NULL OR cycle = ?1) AND (?2 IS NULL OR step = ?2)"
    .. " AND (?3 IS NULL OR updated >= ?3) ORDER BY id LIMIT ?4", cycle, step, since, limit)
  local ids = {}
  for i, r in ipairs(rows) do ids[i] = r.id end
  return ids
end

-- Transactions by cycle and state (the covering index tx_cycle).
function S.counts()
  return S.rows("SELECT cycle, state, count(*) AS n FROM tx GROUP BY cycle, state")
end

return S
