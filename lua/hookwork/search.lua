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

-- The SQL of each backend, side by side: Q.sqlite and Q.postgres hold the
-- same statements and builders, Q.get() the one of the store in use
-- (core.config().store).  Placeholders are written ?N for both (the reader
-- turns them into $N on PostgreSQL).  Both build the same JSON text byte
-- for byte: PostgreSQL's json_build_object spaces its output, so there the
-- objects are concatenated from to_json() of each value (the same escaping
-- as SQLite's json_object), and stored JSON (data, query) is passed on as
-- its text, as SQLite's json() does for the engine's compact encoding.
local Q = { sqlite = {}, postgres = {} }

-- ISO 8601 UTC with milliseconds, rounded to the nearest millisecond as
-- SQLite's 'unixepoch' does.
function Q.sqlite.iso(col) return "strftime('%Y-%m-%dT%H:%M:%fZ', " .. col .. ", 'unixepoch')" end
function Q.postgres.iso(col)
  return "to_char(timestamp 'epoch' + floor((" .. col .. ") * 1000 + 0.5)::int8"
    .. " * interval '1 millisecond', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
end

-- PostgreSQL: an SQL value as JSON text (null for NULL), and a json value
-- as SQLite's ->> then json_object render it (a string re-escaped).
local function J(e) return "coalesce(to_json(" .. e .. ")::text, 'null')" end
-- (JSON null and a missing member give `default`, JSON text, 'null' unless
-- told.)
local function JV(e, default)
  return "coalesce(CASE json_typeof(" .. e .. ") WHEN 'string' THEN to_json((" .. e
    .. ") #>> '{}')::text WHEN 'null' THEN NULL ELSE (" .. e .. ")::text END, "
    .. (default or "'null'") .. ")"
end
-- PostgreSQL: a JSON object from {key, JSON-text expression} pairs.
local function obj(fields)
  local parts = {}
  for i, f in ipairs(fields) do
    parts[#parts + 1] = "'" .. (i > 1 and "," or "{") .. '"' .. f[1] .. '"' .. ":', " .. f[2]
  end
  return "concat(" .. table.concat(parts, ", ") .. ", '}')"
end

-- A stored request as the admin API shows it (?2 in the enclosing query is
-- the list of redacted header names, a JSON array).
function Q.sqlite.request_view(col)
  local iso = Q.sqlite.iso
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
function Q.postgres.request_view(col)
  local iso = Q.postgres.iso
  -- one pass over the stored text (json_each) picks every member; each
  -- json operator would parse the whole text again (a body of megabytes)
  local function m(k) return "(array_agg(e.value) FILTER (WHERE e.key = '" .. k .. "'))[1] AS " .. k end
  return "CASE WHEN " .. col .. " IS NULL THEN 'null' ELSE (SELECT " .. obj({
    { "method", JV("r.method") }, { "path", JV("r.path") },
    { "query", "coalesce(r.query::text, '{}')" },
    { "headers", "(SELECT concat('{', string_agg(concat(to_json(h.key)::text, ':',"
      .. " CASE WHEN lower(h.key) IN (SELECT json_array_elements_text(?2::json))"
      .. " THEN '\"[redacted]\"' ELSE " .. JV("h.value") .. " END), ',' ORDER BY h.n), '}')"
      .. " FROM json_each(CASE WHEN json_typeof(r.headers) = 'object' THEN r.headers END)"
      .. " WITH ORDINALITY h(key, value, n))" },
    { "body", JV("r.body", "'\"\"'") },
    { "body_encoding", JV("r.body_encoding", "'\"utf-8\"'") },
    { "ip", JV("r.ip") }, { "received", J(iso("(r.received #>> '{}')::float8")) } })
    .. " FROM (SELECT " .. table.concat({ m("method"), m("path"), m("query"), m("headers"),
      m("body"), m("body_encoding"), m("ip"), m("received") }, ", ")
    .. " FROM json_each((" .. col .. ")::json) e) r) END"
end

-- One transaction with its requests and history (?1 the id, ?2 the
-- redacted header names).
do
  local iso, rv = Q.sqlite.iso, Q.sqlite.request_view
  Q.sqlite.GET = "SELECT json_object('id', CAST(id AS TEXT),"
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
    .. " 'request', " .. rv("tx.request") .. ","
    .. " 'requests', (SELECT coalesce(json_group_array(json(v)), '[]') FROM (SELECT "
    .. rv("r.request") .. " AS v FROM req r WHERE r.tx = ?1 ORDER BY r.run)),"
    .. " 'history', (SELECT coalesce(json_group_array(json_object("
    .. "'step', v ->> 0, 'run', run, 'started', " .. iso("(v ->> 1) / 1000.0") .. ","
    .. " 'ended', " .. iso("(v ->> 2) / 1000.0") .. ", 'status', v ->> 3,"
    .. " 'error', v ->> 4, 'note', v ->> 5)), '[]') FROM (SELECT h.run,"
    .. " e.value AS v FROM hist h, json_each(h.entries) e WHERE h.tx = ?1"
    .. " ORDER BY h.seq, e.key))) AS j FROM tx WHERE id = ?1"
end
do
  local iso, rv = Q.postgres.iso, Q.postgres.request_view
  Q.postgres.GET = "SELECT " .. obj({
    { "id", J("id::text") }, { "cycle", J("cycle") }, { "state", J("state") },
    { "step", J("step") }, { "data", "coalesce(data::text, '{}')" },
    { "runs", J("runs") }, { "match", J("match_value") }, { "error", J("error") },
    { "created", J(iso("created")) }, { "updated", J(iso("updated")) },
    { "expires", J("CASE WHEN expires_at IS NULL OR state <> 'waiting' THEN NULL ELSE "
      .. iso("expires_at") .. " END") },
    { "retry_at", J(iso("retry_at")) },
    { "attempt", J("attempt") }, { "replay_of", J("replay_of::text") },
    { "linked_from", "CASE WHEN linked_cycle IS NULL THEN 'null' ELSE " .. obj({
      { "cycle", J("linked_cycle") }, { "id", J("linked_id::text") },
      { "transaction", J("linked_id::text") } }) .. " END" },
    { "request", rv("tx.request") },
    { "requests", "(SELECT concat('[', string_agg(" .. rv("r.request")
      .. ", ',' ORDER BY r.run), ']') FROM req r WHERE r.tx = ?1)" },
    { "history", "(SELECT concat('[', string_agg(" .. obj({
      { "step", JV("e.v -> 0") }, { "run", J("h.run") },
      { "started", J(iso("(e.v ->> 1)::float8 / 1000")) },
      { "ended", J(iso("(e.v ->> 2)::float8 / 1000")) },
      { "status", JV("e.v -> 3") }, { "error", JV("e.v -> 4") }, { "note", JV("e.v -> 5") } })
      .. ", ',' ORDER BY h.seq, e.k), ']') FROM hist h,"
      .. " json_array_elements(h.entries::json) WITH ORDINALITY e(v, k) WHERE h.tx = ?1)" } })
    .. " AS j FROM tx WHERE id = ?1"
end

-- A listed transaction (the row's columns) as JSON text.
function Q.sqlite.list_item()
  local iso = Q.sqlite.iso
  return "json_object('id', CAST(id AS TEXT), 'cycle', cycle, 'state', state,"
    .. " 'step', step, 'match', match_value, 'runs', runs,"
    .. " 'created', " .. iso("created") .. ", 'updated', " .. iso("updated") .. ")"
end
function Q.postgres.list_item()
  local iso = Q.postgres.iso
  return obj({ { "id", J("id::text") }, { "cycle", J("cycle") }, { "state", J("state") },
    { "step", J("step") }, { "match", J("match_value") }, { "runs", J("runs") },
    { "created", J(iso("created")) }, { "updated", J(iso("updated")) } })
end

-- `q=PATH=VALUE`: the stored JSON text at a path of data is one of two
-- forms (p, a, b: placeholders of the path and the forms).  SQLite: a JSON
-- path ('$."customer"."email"', '$."items"[0]'); PostgreSQL: a text[]
-- ('{"customer","email"}') for json #>, which yields the value's text as
-- stored, as SQLite's -> does for the engine's compact JSON.
-- The C accept path stores a body's strings as the sender wrote them
-- (escapes such as \u00e9 kept), so a stored string is also compared by
-- its decoded value (f.qval).  On PostgreSQL only one holding a backslash
-- is decoded, and CASE keeps that away from \u0000, which PostgreSQL
-- cannot turn into text.
function Q.sqlite.data_at(arg, f)
  local p = arg(Q.sqlite.path(f.qpath))
  return string.format("((data -> %s) IN (%s, %s) OR (json_type(data, %s) = 'text'"
    .. " AND (data ->> %s) = %s))", p, arg(f.qstr), arg(f.qraw), p, p, arg(f.qval))
end
function Q.postgres.data_at(arg, f)
  local x = string.format("(data::json #> %s::text[])", arg(Q.postgres.path(f.qpath)))
  return string.format("CASE WHEN %s::text IN (%s, %s) THEN true"
    .. " WHEN json_typeof(%s) = 'string' AND strpos(%s::text, '\\') > 0"
    .. " AND strpos(%s::text, '\\u0000') = 0 THEN (%s #>> '{}') = %s::text"
    .. " ELSE false END", x, arg(f.qstr), arg(f.qraw), x, x, x, x, arg(f.qval))
end
function Q.sqlite.path(parts)
  local out = { "$" }
  for i, part in ipairs(parts) do
    out[i + 1] = part:match("^%d+$") and ("[" .. part .. "]") or ('."' .. part .. '"')
  end
  return table.concat(out)
end
function Q.postgres.path(parts)
  local out = {}
  for i, part in ipairs(parts) do out[i] = '"' .. part .. '"' end
  return "{" .. table.concat(out, ",") .. "}"
end

-- Failed transactions for a bulk retry; PostgreSQL must be told the type
-- of a value that may be NULL.
Q.sqlite.FAILED = "SELECT id FROM tx WHERE state = 'failed'"
  .. " AND (?1 IS NULL OR cycle = ?1) AND (?2 IS NULL OR step = ?2)"
  .. " AND (?3 IS NULL OR updated >= ?3) ORDER BY id LIMIT ?4"
Q.postgres.FAILED = "SELECT id FROM tx WHERE state = 'failed'"
  .. " AND (?1::text IS NULL OR cycle = ?1::text) AND (?2::text IS NULL OR step = ?2::text)"
  .. " AND (?3::float8 IS NULL OR updated >= ?3::float8) ORDER BY id LIMIT ?4"

-- Whether ids follow creation time.  SQLite: one engine numbers them in
-- order, so a time range is an id range (S.id_at).  PostgreSQL: each node
-- draws ids in blocks, so a node idle for an hour may hand out an id below
-- one another node gave a minute ago; a time filter there is the WHERE
-- clause alone.
Q.sqlite.ids_follow_time = true
Q.postgres.ids_follow_time = false

-- Statements both backends read alike.
local PORTABLE = {
  MAXID = "SELECT coalesce(max(id), 0) AS m FROM tx",
  ID_AT = "SELECT id, created FROM tx WHERE id >= ?1 ORDER BY id LIMIT 1",
  COUNTS = "SELECT cycle, state, count(*) AS n FROM tx GROUP BY cycle, state",
}
for _, d in pairs(Q) do for k, v in pairs(PORTABLE) do d[k] = v end end

-- The statements of the store in use.
local on_pg -- the store's kind does not change while the engine runs
function Q.get()
  if on_pg == nil then on_pg = core.config().store == "postgres" end
  return on_pg and Q.postgres or Q.sqlite, on_pg
end
S.Q = Q

-- One transaction as JSON text, or nil.
function S.get(id)
  local rows = S.rows(Q.get().GET, id, require("hookwork.ops").redacted())
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

-- `q=PATH=VALUE`: the keys of a dotted path ("customer.email",
-- "items.0.sku"), or nil when a key cannot be written safely.
local function json_path(p)
  local out = {}
  for part in p:gmatch("[^%.]+") do
    if part:find('["\\]') then return nil end
    out[#out + 1] = part
  end
  if #out == 0 then return nil end
  return out
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
    f.qpath, f.qval = jp, value
    f.qstr, f.qraw = json_forms(value)
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
    local row = S.rows(PORTABLE.ID_AT, mid)[1]
    if not row then hi = mid - 1
    elseif row.created >= t then found, hi = row.id, mid - 1
    else lo = row.id + 1 end
  end
  return found
end

-- PostgreSQL text holds neither NUL bytes nor bytes that are not UTF-8,
-- so no stored value equals a filter with them: such a filter finds
-- nothing, as on SQLite, instead of an encoding error.
function S.pg_text_ok(f)
  for _, k in ipairs({ "cycle", "state", "step", "match", "qstr", "qraw", "qval" }) do
    local v = f[k]
    if v and (v:find("\0", 1, true) or not utf8.len(v)) then return false end
  end
  for _, part in ipairs(f.qpath or {}) do
    if part:find("\0", 1, true) or not utf8.len(part) then return false end
  end
  return true
end

-- Lists transactions newest first; returns the JSON text of the array and
-- the next cursor (or nil).
function S.list(f)
  local q, pg = Q.get()
  if pg and not S.pg_text_ok(f) then return "[]", nil end
  local where, args = {}, {}
  local function arg(v) args[#args + 1] = v; return "?" .. #args end
  if f.cycle then where[#where + 1] = "cycle = " .. arg(f.cycle) end
  if f.state then where[#where + 1] = "state = " .. arg(f.state) end
  if f.step then where[#where + 1] = "step = " .. arg(f.step) end
  if f.match then where[#where + 1] = "match_value = " .. arg(f.match) end
  if f.qpath then
    where[#where + 1] = q.data_at(arg, f)
  end
  local maxid = S.rows(PORTABLE.MAXID)[1].m
  local hi = f.cursor and f.cursor - 1 or maxid
  local lo = 1
  if f.since then
    where[#where + 1] = "created >= " .. arg(f.since)
    if q.ids_follow_time then lo = S.id_at(f.since, maxid) or (maxid + 1) end
  end
  if f.before then
    where[#where + 1] = "created < " .. arg(f.before)
    local first_after = q.ids_follow_time and S.id_at(f.before, maxid)
    if first_after and first_after - 1 < hi then hi = first_after - 1 end
  end
  -- a bounded window when paging with a filter no index serves
  local indexed = f.match or (f.cycle and f.state)
  local window_lo = lo
  if f.page and not indexed and hi - lo + 1 > S.SCAN_WINDOW then window_lo = hi - S.SCAN_WINDOW + 1 end
  where[#where + 1] = "id BETWEEN " .. arg(window_lo) .. " AND " .. arg(hi)
  local sql = "SELECT id, " .. q.list_item() .. " AS j FROM tx WHERE " .. table.concat(where, " AND ")
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
  local rows = S.rows(Q.get().FAILED, cycle, step, since, limit)
  local ids = {}
  for i, r in ipairs(rows) do ids[i] = r.id end
  return ids
end

-- Transactions by cycle and state (the covering index tx_cycle).
function S.counts()
  return S.rows(PORTABLE.COUNTS)
end

return S
