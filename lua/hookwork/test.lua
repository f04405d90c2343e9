-- hookwork.test: the API of *_test.lua files (t.case, t.post, t.mock,
-- t.requests, t.transaction, t.eq, t.ok, t.fails, t.advance, t.retry,
-- t.cancel).
-- Outbound HTTP is answered by mocks; an unmocked call fails the case.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local C = require "hookwork.callers"
local core = R.core
local t = {}
local S = { cases = {}, mocks = {}, requests = {}, unmocked = {} }
local req_name, route

local function parse_headers(list)
  local h = {}
  for _, line in ipairs(list or {}) do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then h[k:lower()] = v end
  end
  return h
end

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then
    local ok, s = pcall(U.encode, v)
    if ok then return s end
  end
  return tostring(v)
end

-- Deep equality for tables (JSON-like values).
local function equal(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then
    return type(a) == "number" and type(b) == "number" and a == b
  end
  for k, v in pairs(a) do if not equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

function t._begin() S.cases = {} end
function t._cases() return S.cases end

-- After the case body: it fails if any outbound call had no mock.
function t._verdict()
  if #S.unmocked > 0 then return false, "unmocked outbound request: " .. S.unmocked[1] end
  return true
end

function t.case(name, fn)
  if type(name) ~= "string" or type(fn) ~= "function" then
    error("t.case(name, function) expected", 2)
  end
  S.cases[#S.cases + 1] = { name = name, fn = function()
    S.mocks, S.requests, S.unmocked = {}, {}, {}
    R.transport = t._transport
    fn()
  end }
end

function t.eq(a, b, msg)
  if not equal(a, b) then
    error(string.format("%sexpected %s, got %s", msg and (msg .. ": ") or "", fmt(b), fmt(a)), 2)
  end
end

function t.ok(v, msg)
  if not v then error(msg or "expected a true value", 2) end
  return v
end

function t.fails(fn, pattern)
  local ok, err = pcall(fn)
  if ok then error("expected an error", 2) end
  if pattern and not tostring(err):find(pattern) then
    error(string.format("error %s does not match %q", fmt(tostring(err)), pattern), 2)
  end
  return err
end

local function split(url)
  local path = url:match("^https?://[^/]+(/[^?#]*)") or url:match("^([^?#]*)")
  local query = url:match("%?([^#]*)")
  return path ~= "" and path or "/", query
end

-- A query as a sorted list of decoded "key=value" pairs, so a mock's query
-- matches whatever the order and percent-encoding of the real one.
local function query_key(q)
  local pairs_ = {}
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    pairs_[#pairs_ + 1] = U.url_decode(k) .. "=" .. U.url_decode(v)
  end
  table.sort(pairs_)
  return table.concat(pairs_, "&")
end

-- A mock URL matches a request on its path alone (any query), or on its
-- path and query (decoded, in any order).  A full URL compares origins too.
local function matches(pattern, req)
  local origin, rest = pattern:match("^(https?://[^/?#]+)(.*)$")
  if origin then
    if origin ~= req.url:match("^https?://[^/?#]+") then return false end
    pattern = rest ~= "" and rest or "/"
  end
  local path, query = pattern:match("^([^?#]*)%??([^#]*)")
  if path ~= req.path then return false end
  if not pattern:find("?", 1, true) then return true end
  return query_key(query) == query_key(req.raw_query)
end

function t.mock(method, url, response)
  table.insert(S.mocks, 1, { method = method:upper(), url = url, response = response or {} })
end

local function mock_answer(m, rec)
  local r = m.response
  if r[1] ~= nil then  -- a sequence: answered in turn, the last repeating
    m.next = (m.next or 0) + 1
    r = r[math.min(m.next, #r)]
  end
  if type(r) == "function" then r = r(rec) or {} end
  local h = {}
  for k, v in pairs(r.headers or {}) do h[k:lower()] = tostring(v) end
  local body = r.body or ""
  if r.json ~= nil then
    body = U.encode(r.json)
    h["content-type"] = h["content-type"] or "application/json"
  end
  if r.error then return { error = req_name(rec) .. ": " .. r.error } end
  return { status = r.status or 200, headers = h, body = body }
end

req_name = function(rec) return rec.method .. " " .. rec.url end

local function record(req)
  local path, query = split(req.url)
  local headers = {}
  for _, h in ipairs(req.headers or {}) do
    local k, v = h:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  local rec = { method = req.method, url = req.url, path = path, raw_query = query,
                query = U.parse_query(query), headers = headers, body = req.body,
                json = req.body and U.decode(req.body) or nil }
  S.requests[#S.requests + 1] = rec
  return rec
end

-- Answers outbound calls from the mocks, with the engine's retry rule
-- (connection errors, 429 and 5xx) but no real waiting.
function t._transport(req)
  if req.url:find("^http://hookwork%.test/") then return route(req) end
  local attempts, res = {}, nil
  for _ = 0, math.max(0, req.retries or 0) do
    local rec = record(req)
    local m
    for _, x in ipairs(S.mocks) do
      if x.method == req.method and matches(x.url, rec) then m = x break end
    end
    if not m then
      S.unmocked[#S.unmocked + 1] = req_name(rec)
      return { error = "unmocked outbound request: " .. req_name(rec), attempts = attempts, seconds = 0 }
    end
    res = mock_answer(m, rec)
    attempts[#attempts + 1] = { status = res.status or 0, seconds = 0, error = res.error }
    local s = res.status or 0
    if not (res.error or s == 429 or s >= 500) then break end
  end
  res.attempts, res.seconds = attempts, 0
  return res
end

function t.requests(method, url)
  local out = {}
  for _, r in ipairs(S.requests) do
    if (not method or r.method == method:upper()) and (not url or matches(url, r)) then
      out[#out + 1] = r
    end
  end
  return out
end

-- Submits request r to webhook `hook` in-process through the engine's own
-- accept path; returns the answer {status, headers, body, json}.  With
-- until_end, returns once the run it started has ended or parked;
-- otherwise at the answer (202 at acknowledgement, or the sync answer).
local function submit(hook, r, until_end)
  local me, waiting, ended, res = coroutine.running(), false, false, nil
  local function wake()
    if waiting then waiting = false; core.wake(me) end
  end
  local caller = C.new(nil, hook.cycle, hook.step, function(status, ctype, hs, b)
    local hh = parse_headers(hs)
    if ctype then hh["content-type"] = ctype end
    res = { status = status, headers = hh, body = b,
            json = (ctype or ""):find("json", 1, true) and U.decode(b) or nil }
    if not until_end then wake() end
  end)
  caller.on_end = function()
    ended = true
    wake()
  end
  caller.on_pause = caller.on_end -- a step waits for its next attempt
  local status, body, hs = require("hookwork.engine").submit(hook, r, caller)
  if status then C.send(caller, status, body, hs) return res end
  while not (until_end and ended or not until_end and res) do
    waiting = true
    core.wait()
  end
  return res
end

local function hook_of(cycle, hook, fn)
  local cy = R.cycles[cycle]
  local h = cy and cy.hooks and cy.hooks[hook]
  if not h then error(string.format("%s: no webhook '%s' in cycle '%s'", fn, tostring(hook), tostring(cycle)), 3) end
  return h
end

-- Sends a request to a webhook in-process and returns once the run it
-- started has ended or parked (opts.wait = false: at acknowledgement):
-- {status, headers, body, json}.  opts: ip, method, headers, query,
-- content_type, body (raw bytes instead of the JSON of `body`).
function t.post(cycle, hook, body, opts)
  opts = opts or {}
  local h = hook_of(cycle, hook, "t.post")
  local headers = { ["content-type"] = opts.content_type or "application/json" }
  for k, v in pairs(opts.headers or {}) do headers[k:lower()] = v end
  local text = opts.body or (type(body) == "string" and body or U.encode(body or {}))
  local r = { method = (opts.method or "POST"):upper(), path = "/hooks/" .. h.token, query = opts.query or "",
              headers = headers, body = text, ip = opts.ip or "127.0.0.1" }
  return submit(h, r, opts.wait ~= false)
end

-- hw.url under the harness gives URLs on this origin; calls to them are
-- routed in-process to the webhook, as a real HTTP call would be.
t.ORIGIN = "http://hookwork.test"

route = function(req)
  local token, query = req.url:match("^http://hookwork%.test/hooks/([%w_%-]+)/?%??([^#]*)")
  local hook = token and R.tokens[token]
  local res
  if not hook then
    local status, body = require("hookwork.answers").unknown_webhook()
    res = { status = status, headers = { ["content-type"] = "application/json" },
            body = U.encode(body) }
  else
    local headers = parse_headers(req.headers)
    if req.body and not headers["content-type"] then headers["content-type"] = "application/json" end
    res = submit(hook, { method = req.method, path = "/hooks/" .. token, query = query or "",
                         headers = headers, body = req.body or "", ip = "127.0.0.1" }, false)
  end
  res.attempts = { { status = res.status, seconds = 0 } }
  res.seconds = 0
  return res
end

-- t.connector(name, {allowed_ips = {...}}): as PUT /api/connectors/NAME.
function t.connector(name, o)
  if not R.connectors[name] then error(string.format("t.connector: no connector '%s'", tostring(name)), 2) end
  if type(o) ~= "table" or type(o.allowed_ips) ~= "table" then
    error("t.connector: expected {allowed_ips = {...}}", 2)
  end
  local err = require("hookwork.loader").put_connector(name, o.allowed_ips)
  if err then error("t.connector: allowed_ips: " .. err, 2) end
end

local function set_state(cycle, state, fn)
  local cy = R.cycles[cycle]
  if not cy or not cy.def then error(string.format("%s: no cycle '%s'", fn, tostring(cycle)), 3) end
  require("hookwork.loader").set_state(cycle, state)
end

function t.start(cycle) set_state(cycle, "running", "t.start") end
function t.stop(cycle) set_state(cycle, "stopped", "t.stop") end

function t.transaction(id)
  core.commit()
  local text = require("hookwork.search").get(math.tointeger(tonumber(id)) or -1)
  return text and U.decode(text) or nil
end

-- Waits until each of the jobs (just spawned, not yet started) has ended
-- or paused for a retry delay.
local function settle(jobs)
  local pending, me, waiting = #jobs, coroutine.running(), false
  if pending == 0 then return end
  local function one()
    pending = pending - 1
    if pending == 0 and waiting then waiting = false; core.wake(me) end
  end
  for _, job in ipairs(jobs) do
    local e, p = job.on_end, job.on_pause
    job.on_end = function(...)
      job.on_end, job.on_pause = e, p
      if e then e(...) end
      one()
    end
    job.on_pause = function(...)
      job.on_end, job.on_pause = e, p
      if p then p(...) end
      one()
    end
  end
  waiting = true
  core.wait()
end

-- Moves the clock: waits expire and steps waiting for their next attempt
-- run (t.advance returns once those runs have ended or wait again).
function t.advance(seconds)
  R.clock_offset = R.clock_offset + seconds
  core.commit()
  require("hookwork.engine").expire_now()
  local jobs = require("hookwork.ops").wake(R.clock())
  settle(jobs)
  core.commit()
end

local function op(a)
  if a.error then return { status = a.status, json = { error = a.error } } end
  return { status = a.status, json = a.body }
end

-- Retries a failed transaction (from its failed step, or opts.from) and
-- returns {status, json} once the run has ended or waits for an attempt.
function t.retry(id, opts)
  local from = type(opts) == "table" and opts.from or opts
  local a = require("hookwork.ops").retry(tostring(id), from)
  if a.job then settle({ a.job }) end
  return op(a)
end

-- Cancels a waiting or running transaction: {status, json}.
function t.cancel(id)
  return op(require("hookwork.ops").cancel(tostring(id)))
end

return t
