-- dedupe: the webhook's `dedupe` option.  A key (a header, a body field,
-- a function of the request, or the verify scheme's delivery id) seen on
-- the same webhook within the window is not run again: the duplicate gets
-- the first delivery's answer.  Keys are written to the store in the same
-- commit as the request they accepted; keys not yet committed are kept in
-- memory until the store commits past them, so a duplicate arriving right
-- behind the first still sees it.  Keys, that overlay and the store's
-- table are core/dedupe.c's (shared with the C accept path); this module
-- binds them to the Lua door, runs function keys and answers duplicates.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local C = require "hookwork.callers"
local Ans = require "hookwork.answers"
local door = require "hookwork.door"
local core = R.core
local D = {}

local WINDOW = 86400

local function fail(where, msg) error((where and where .. ": " or "") .. msg, 0) end

-- Compiles `dedupe` (true, a function, or {header|field|key, window}).
-- spec.c is the C key source (core/dedupe.c) the accept path uses too;
-- only a function key has none.
function D.compile(v, verify, where)
  if v == nil or v == false then return nil end
  local spec = { window = WINDOW }
  if v == true then
    for _, s in ipairs(verify or {}) do
      if door.delivery(s.c) then
        spec.c, spec.from = door.dedupe_spec("delivery", nil, door.list({ s.c }), WINDOW), s.scheme
        break
      end
    end
    if not spec.c then
      fail(where, "hw.webhook: 'dedupe = true' needs verify = standard_webhooks, stripe or github "
                  .. "(their delivery id); otherwise give {header = ...}, {field = ...} or a function")
    end
    spec.field = spec.from == "stripe" and { "id" } or nil
    return spec
  end
  if type(v) == "function" then spec.fn = v return spec end
  if type(v) ~= "table" then
    fail(where, "hw.webhook: 'dedupe' must be true, a function(req) or {header = ...}, {field = ...}")
  end
  for k in pairs(v) do
    if k ~= "header" and k ~= "field" and k ~= "key" and k ~= "window" then
      fail(where, string.format("hw.webhook: dedupe: unknown option '%s'%s", tostring(k),
                                U.did_you_mean(k, { "header", "field", "key", "window" })))
    end
  end
  local n = (v.header and 1 or 0) + (v.field and 1 or 0) + (v.key and 1 or 0)
  if n ~= 1 then fail(where, "hw.webhook: dedupe: give exactly one of 'header', 'field' or 'key'") end
  if v.header ~= nil and (type(v.header) ~= "string" or v.header == "") then
    fail(where, "hw.webhook: dedupe: 'header' must name a header")
  end
  if v.field ~= nil and (type(v.field) ~= "string" or v.field == "" or #U.split_path(v.field) == 0) then
    fail(where, "hw.webhook: dedupe: 'field' must name a body field")
  end
  if v.key ~= nil and type(v.key) ~= "function" then
    fail(where, "hw.webhook: dedupe: 'key' must be a function(req)")
  end
  if v.window ~= nil and (type(v.window) ~= "number" or v.window <= 0) then
    fail(where, "hw.webhook: dedupe: 'window' must be a positive number of seconds")
  end
  spec.window = v.window or WINDOW
  if v.header then spec.c = door.dedupe_spec("header", v.header, nil, spec.window) end
  if v.field then
    spec.c = door.dedupe_spec("field", v.field, nil, spec.window)
    if not spec.c then fail(where, "hw.webhook: dedupe: 'field' has too many parts") end
    spec.field = U.split_path(v.field) -- a form body's fields are read here
  end
  spec.fn = v.key
  return spec
end

-- A value as a key: scalars only (nil, null and tables are no key).
local function key_of(k)
  if k == nil or k == U.null or type(k) == "table" then return nil end
  return door.key_of(U.scalar_string(k))
end

-- The request's key, or nil (no key: the request is not deduplicated),
-- or nil, message when the key function failed.  A field key is read from
-- the JSON text by door.c; a form's fields (decoded here) from obj.
function D.key(spec, req, obj)
  if spec.c then
    local k = door.key(spec.c, req.headers, req.json ~= nil and req.body or nil)
    if k ~= false then return k end
    return key_of(type(obj) == "table" and U.get(obj, spec.field) or nil)
  end
  -- cycle code: a step's scope (budget, memory), its error a string
  local ok, v = core.protect(spec.fn, req, obj)
  if not ok then return nil, "dedupe key function failed: " .. v end
  return key_of(v)
end

local function answer_of(a)
  if not a then return nil end
  return { status = a.status, ctype = a.ctype, headers = U.decode(a.headers or "[]") or {}, body = a.body or "" }
end

-- The first delivery for this key within its window, or nil: the keys not
-- committed yet (door.c's overlay), then the store.
function D.find(cycle, step, key, now)
  local tx, seq, a = door.find(cycle, step, key, now)
  if not tx then return nil end
  -- (several nodes: a negative tx is another node's claim, its request
  -- not yet committed; see D.claim)
  return { tx = tx, cycle = cycle, step = step, key = key, seq = seq, stored = seq == nil,
           pending = tx < 0 or nil, answer = answer_of(a) }
end

-- Several nodes (PostgreSQL): the key is taken in the store before the
-- request is accepted, with one insert-if-absent, so two nodes receiving
-- it at once do not both run it.  The row holds -(claim time) until the
-- request's own write (dedupe_put, same commit) puts its transaction
-- there; a claim whose request never committed (its node died) is taken
-- again after CLAIM_STALE seconds.  Returns nil when this request holds
-- the key (or on SQLite), else the first delivery's entry; or nil and the
-- store's error when the claim could not be made.
local CLAIM_STALE = 30
function D.claim(cycle, step, key, window, now)
  if R.cfg.store ~= "postgres" then return nil end
  local rows, err = core.query("dedupe_claim", cycle, step, key, -math.floor(now),
                               now + window, now, CLAIM_STALE)
  if not rows then return nil, tostring(err) end -- nothing stored: 503
  if rows[1] then return nil end
  return D.find(cycle, step, key, now) or { tx = 0, cycle = cycle, step = step, key = key,
                                            stored = true, pending = true }
end

-- The claim of a request that was not accepted (or remembers no single
-- transaction) is given back.
function D.unclaim(cycle, step, key)
  if R.cfg.store ~= "postgres" then return end
  core.write("dedupe_release", cycle, step, key, 0)
end

-- Remembers the key of an accepted request; its row goes to the store in
-- the same commit as the request (a request's write, dropped with the
-- request's own if their batch fails).  Returns the entry (job.dedupe).
function D.note(cycle, step, key, tx, window, now)
  local e = { cycle = cycle, step = step, key = key, tx = tx, expires = now + window }
  e.seq = door.note(cycle, step, key, tx, window, now)
  return e
end

-- The request's commit failed: the key was not stored either.
function D.forget(e)
  e.failed = true
  if R.cfg.store == "postgres" then core.write("dedupe_release", e.cycle, e.step, e.key, e.tx) end
  door.forget(e.cycle, e.step, e.key, e.tx)
end

-- The answer a synchronous first delivery got (504 and 503 are not
-- answers of the cycle: a duplicate then gets the run's outcome).
function D.record(e, status, ctype, headers, body)
  if status == 504 or status == 503 or e.failed then return end
  e.answer = { status = status, ctype = ctype, headers = headers or {}, body = body or "" }
  door.record(e.cycle, e.step, e.key, e.tx, status, ctype,
              U.encode(U.json.array(U.copy(e.answer.headers))), e.answer.body)
end

local function stored(e)
  return core.query("dedupe_get", e.cycle, e.step, e.key, -math.huge)[1]
end

-- A duplicate's answer, once the first delivery is durable (it waits for
-- the same commit).
local function answer(e, sync, caller)
  -- the first delivery's own commit (a full flush would wait for the store
  -- to recover while commits fail)
  local ok
  if e.seq then ok = core.commit(e.seq) else ok = core.commit() end
  local id = tostring(e.tx)
  if not ok or e.failed then
    C.send(caller, Ans.store_unavailable("the first delivery was not stored"))
    return
  end
  if not sync then
    C.send(caller, Ans.duplicate(id))
    return
  end
  local a = e.answer
  local row = (not a) and stored(e)
  if row and row.status then
    a = { status = row.status, ctype = row.ctype, headers = U.decode(row.headers or "[]") or {},
          body = row.body }
  end
  if a then
    local h = {}
    for i, x in ipairs(a.headers) do h[i] = x end
    C.answer(caller, math.tointeger(a.status) or 200, a.ctype, h, a.body)
  elseif not row or row.state == nil or row.state == "running" then
    C.send(caller, Ans.duplicate_running(id))
  elseif row.state == "failed" then
    C.send(caller, Ans.duplicate_failed(id))
  else
    C.send(caller, Ans.duplicate_state(id, row.state))
  end
end

-- Answers a duplicate like the first delivery; runs nothing.
function D.reply(e, sync, caller)
  core.spawn(function()
    if e.pending then
      -- another node holds the key and its request is not committed yet:
      -- its answer once it is (or, when it never is, 503: not stored)
      local deadline = R.clock() + 10
      while e.pending and R.clock() < deadline do
        require("hookwork.nodes").sleep()
        local row = core.query("dedupe_get", e.cycle, e.step, e.key, -math.huge)
        row = row and row[1]
        if not row then break end
        if row.tx > 0 then e = { tx = row.tx, cycle = e.cycle, step = e.step, key = e.key, stored = true } end
      end
      if e.pending then e = { tx = 0, failed = true } end
    end
    answer(e, sync, caller)
    -- nothing runs for a duplicate: whoever waits for a run's end (the
    -- test harness) is told now
    if caller.on_end then caller.on_end("duplicate") end
  end)
end

-- Drops the overlay's committed keys; purges expired stored keys (in
-- batches of at most 1000 a second, only when an index probe finds some;
-- with several nodes, one of them: require("hookwork.nodes").sweeper()).
function D.tick(now) door.tick(now, require("hookwork.nodes").sweeper()) end

return D
