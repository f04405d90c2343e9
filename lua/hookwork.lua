-- hookwork: the API cycle files use (`local hw = require "hookwork"`).
-- Constructors check their options and remember the line they were written
-- on, so load errors read "FILE:LINE: message"; hw.http calls yield the
-- transaction's coroutine while libcurl works.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local F = require "hookwork.fields"
local V = require "hookwork.verify"
local D = require "hookwork.dedupe"
local crypto = require "hookwork.crypto"
local core = R.core

local hw = { json = { encode = U.encode, decode = U.decode, null = U.null,
                      array = U.json.array } }

-- Step objects carry a protected metatable (cycle code cannot reach or
-- change it); the engine knows its own steps by this weak set.
local STEP = { __metatable = "hookwork step" }
local STEPS = setmetatable({}, { __mode = "k" })

-- What cycle files hand over is copied raw (no metamethod of theirs runs
-- when the engine reads it later, outside any step), and what hw makes for
-- a file is marked, so the loader accepts nothing else as the file's result.
local MADE = require("hookwork.sandbox").made
local function raw_copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local c = {}
  seen[v] = c
  for k, x in next, v do c[raw_copy(k, seen)] = raw_copy(x, seen) end
  return c
end

local function fail(where, msg) error((where and where .. ": " or "") .. msg, 0) end

local COMMON = { name = true, retry = true, on_error = true }
local OPTIONS = {
  webhook = { fields = true, match = true, ip_filtered = true, methods = true,
              expires = true, description = true, verify = true, dedupe = true,
              cors = true, pick = true, early = true, resume_with = true },
  step = { run = true, description = true },
  decision = { test = true, on_false = true, description = true },
  map = { fields = true, description = true },
  respond = { status = true, headers = true, body = true, description = true },
  request = { method = true, url = true, headers = true, query = true,
              json = true, body = true, timeout = true, retries = true,
              save_as = true, auth = true, follow = true,
              fail_on_status = true, description = true, max_response = true,
              insecure = true },
  link = { cycle = true, hook = true, body = true, description = true },
  finish = { state = true, description = true },
}
local PICKS = { most_recent = true, oldest = true, all = true, only = true }
local FINISH_STATES = { completed = true, failed = true }
local METHODS = { GET = true, POST = true, PUT = true, PATCH = true,
                  DELETE = true, HEAD = true, OPTIONS = true }

local function need(s, key, types)
  local v = s[key]
  if v ~= nil and not types[type(v)] then
    local names = {}
    for t in pairs(types) do names[#names + 1] = t end
    table.sort(names)
    fail(s.where, string.format("hw.%s: '%s' must be %s", s.kind, key,
         table.concat(names, " or ")))
  end
end

-- cors = {origins = {...} | "*", headers = {...}, max_age = 600}
local function compile_cors(s)
  local c = s.cors
  if c == nil then return nil end
  if type(c) ~= "table" then fail(s.where, "hw.webhook: 'cors' must be a table {origins = ...}") end
  for k in pairs(c) do
    if k ~= "origins" and k ~= "headers" and k ~= "max_age" then
      fail(s.where, string.format("hw.webhook: cors: unknown option '%s'%s", tostring(k),
                                  U.did_you_mean(k, { "origins", "headers", "max_age" })))
    end
  end
  local out = { origins = {}, max_age = c.max_age or 600 }
  if c.origins == "*" then
    out.any = true
  elseif type(c.origins) == "table" and #c.origins > 0 then
    for i, o in ipairs(c.origins) do
      if type(o) ~= "string" or not o:match("^https?://[^/]+$") then
        fail(s.where, string.format("hw.webhook: cors: origin %d must be like "
                                    .. "https://app.example.com (scheme and host, no path)", i))
      end
      out.origins[i] = o
    end
  else
    fail(s.where, "hw.webhook: cors: 'origins' must be \"*\" or a list of origins")
  end
  if type(out.max_age) ~= "number" or out.max_age < 0 then
    fail(s.where, "hw.webhook: cors: 'max_age' must be a number of seconds")
  end
  -- what a browser sender may send: Content-Type, Authorization and the
  -- headers the verify schemes read, unless the file lists its own
  local headers = c.headers
  if headers == nil then
    headers = { "Content-Type", "Authorization" }
    for _, v in ipairs(s.verify or {}) do
      for _, h in ipairs(v.headers or {}) do
        if h ~= "authorization" then headers[#headers + 1] = h end
      end
    end
  end
  if type(headers) ~= "table" then fail(s.where, "hw.webhook: cors: 'headers' must be a list of header names") end
  out.headers = {}
  for i, h in ipairs(headers) do
    if type(h) ~= "string" or not h:match("^[%w%-]+$") then
      fail(s.where, string.format("hw.webhook: cors: header %d is not a header name", i))
    end
    out.headers[i] = h
  end
  return out
end

local CHECKS = {
  webhook = function(s)
    need(s, "name", { string = true })
    local spec, err = F.compile(s.fields)
    if err then fail(s.where, "hw.webhook: " .. err) end
    s.spec = spec
    need(s, "ip_filtered", { boolean = true })
    need(s, "expires", { number = true })
    if s.expires and s.expires <= 0 then fail(s.where, "hw.webhook: 'expires' must be positive") end
    local m = s.match
    if m ~= nil then
      if type(m) == "string" then m = { request = m, transaction = m }
      elseif type(m) == "table" then
        m = { request = m.request or m.transaction, transaction = m.transaction or m.request }
      end
      if type(m) ~= "table" or type(m.request) ~= "string" or type(m.transaction) ~= "string" then
        fail(s.where, "hw.webhook: 'match' must be a field name or {request = f, transaction = g}")
      end
      s.match = m
    end
    need(s, "pick", { string = true })
    if s.pick ~= nil and not PICKS[s.pick] then
      fail(s.where, "hw.webhook: 'pick' must be \"most_recent\", \"oldest\", \"all\" or \"only\"")
    end
    need(s, "early", { number = true })
    if s.early ~= nil and not (s.early > 0 and s.early < math.huge) then
      fail(s.where, "hw.webhook: 'early' must be a positive number of seconds")
    end
    if s.early == 0 then s.early = nil end
    need(s, "resume_with", { string = true })
    if s.resume_with ~= nil and s.resume_with ~= "snapshot" and s.resume_with ~= "latest" then
      fail(s.where, "hw.webhook: 'resume_with' must be \"snapshot\" or \"latest\"")
    end
    local methods = {}
    for _, x in ipairs(s.methods or { "POST" }) do
      local up = tostring(x):upper()
      if not METHODS[up] then fail(s.where, "hw.webhook: unknown method '" .. tostring(x) .. "'") end
      methods[up] = true
    end
    s.method_set = methods
    local ok, verr = pcall(function()
      s.verify = V.compile(s.verify)
      s.dedupe = D.compile(s.dedupe, s.verify)
    end)
    if not ok then fail(s.where, tostring(verr)) end
    s.cors = compile_cors(s)
  end,
  step = function(s)
    if type(s.run) ~= "function" then fail(s.where, "hw.step: 'run' must be a function(tx)") end
  end,
  decision = function(s)
    if type(s.test) ~= "function" then fail(s.where, "hw.decision: 'test' must be a function(tx)") end
    need(s, "on_false", { string = true })
  end,
  map = function(s)
    if type(s.fields) ~= "table" then fail(s.where, "hw.map: 'fields' must be a table") end
    for k, v in pairs(s.fields) do
      if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "function") then
        fail(s.where, "hw.map: each field maps a target name to a source path or function(tx)")
      end
    end
  end,
  respond = function(s)
    need(s, "status", { number = true, ["function"] = true })
    need(s, "headers", { table = true, ["function"] = true })
    need(s, "body", { table = true, string = true, ["function"] = true })
  end,
  request = function(s)
    if s.url == nil then fail(s.where, "hw.request: 'url' is required") end
    need(s, "url", { string = true, ["function"] = true })
    need(s, "method", { string = true, ["function"] = true })
    if type(s.method) == "string" and not METHODS[s.method:upper()] then
      fail(s.where, "hw.request: unknown method '" .. s.method .. "'")
    end
    need(s, "save_as", { string = true })
    if s.json ~= nil and s.body ~= nil then fail(s.where, "hw.request: give 'json' or 'body', not both") end
  end,
  link = function(s)
    if type(s.cycle) ~= "string" then fail(s.where, "hw.link: 'cycle' must be a cycle name") end
    if type(s.hook) ~= "string" then fail(s.where, "hw.link: 'hook' must be a webhook step name") end
    need(s, "body", { table = true, ["function"] = true })
  end,
  finish = function(s)
    need(s, "state", { string = true })
    s.state = s.state or "completed"
    if not FINISH_STATES[s.state] then
      fail(s.where, "hw.finish: 'state' must be \"completed\" or \"failed\"")
    end
  end,
}

-- The step error policy (any step): retry = {attempts, delays} and
-- on_error = "STEP" (checked against the cycle in normalize_steps).
local function check_policy(s)
  local r = s.retry
  if r ~= nil then
    if type(r) ~= "table" then fail(s.where, "retry: expected {attempts = N, delays = {seconds, ...}}") end
    for k in next, r do
      if k ~= "attempts" and k ~= "delays" then fail(s.where, string.format("retry: unknown option '%s'", tostring(k))) end
    end
    local n = rawget(r, "attempts")
    if math.type(n) ~= "integer" or n < 1 then fail(s.where, "retry: 'attempts' must be a positive integer") end
    local delays = rawget(r, "delays") or { 10 }
    if type(delays) ~= "table" or rawlen(delays) == 0 then fail(s.where, "retry: 'delays' must be a non-empty list of seconds") end
    local copy = {}
    for i = 1, rawlen(delays) do
      local d = rawget(delays, i)
      if type(d) ~= "number" or d < 0 or d ~= d or d == math.huge then
        fail(s.where, string.format("retry: delay %d must be a number of seconds >= 0", i))
      end
      copy[i] = d
    end
    s.retry = { attempts = n, delays = copy }
  end
  if s.on_error ~= nil and type(s.on_error) ~= "string" then fail(s.where, "on_error: expected a step name") end
end

for kind, allowed in pairs(OPTIONS) do
  hw[kind] = function(o)
    local where = core.where(2)
    if type(o) ~= "table" then fail(where, "hw." .. kind .. " expects a table of options") end
    local s = {}
    for k, v in pairs(o) do
      if not allowed[k] and not COMMON[k] then
        local all = {}
        for name in pairs(allowed) do all[#all + 1] = name end
        for name in pairs(COMMON) do all[#all + 1] = name end
        fail(where, string.format("hw.%s: unknown option '%s'%s", kind, tostring(k),
                                  U.did_you_mean(k, all)))
      end
      s[k] = v
    end
    s.kind, s.where = kind, where
    CHECKS[kind](s)
    STEPS[s] = true
    check_policy(s)
    return setmetatable(s, STEP)
  end
end

-- Names steps, checks uniqueness and forward decision targets, and notes
-- for each webhook whether a respond step follows it (a synchronous call).
local function normalize_steps(c, where)
  if type(c.steps) ~= "table" or #c.steps == 0 then
    fail(where, "hw.cycle: 'steps' must be a non-empty list of steps")
  end
  local index = {}
  for i, s in ipairs(c.steps) do
    if not STEPS[s] then
      fail(where, string.format("hw.cycle: step %d is not a step (use hw.webhook, hw.step, ...)", i))
    end
    if s.kind == "webhook" and not s.name then fail(s.where, "hw.webhook: webhook steps must be named") end
    s.name = s.name or (s.kind .. " " .. i)
    if index[s.name] then fail(s.where, string.format("duplicate step name '%s'", s.name)) end
    index[s.name] = i
    s.index = i
  end
  if c.steps[1].kind ~= "webhook" then fail(where, "hw.cycle: the first step must be a hw.webhook (the trigger)") end
  for i, s in ipairs(c.steps) do
    if s.kind == "decision" and s.on_false and s.on_false ~= "stop" then
      local j = index[s.on_false]
      if not j then fail(s.where, string.format("decision '%s': on_false names no step '%s'", s.name, s.on_false)) end
      if j <= i then fail(s.where, string.format("decision '%s': on_false step '%s' must come later", s.name, s.on_false)) end
    end
    if s.on_error then
      local j = index[s.on_error]
      if not j then fail(s.where, string.format("step '%s': on_error names no step '%s'", s.name, s.on_error)) end
      if j <= i then fail(s.where, string.format("step '%s': on_error step '%s' must come later", s.name, s.on_error)) end
    end
    if s.kind == "webhook" then
      if i > 1 and not s.match then fail(s.where, string.format("webhook '%s': a mid-cycle webhook needs 'match'", s.name)) end
      for _, k in ipairs({ "pick", "early", "resume_with" }) do
        if i == 1 and s[k] ~= nil then
          fail(s.where, string.format("webhook '%s': '%s' applies to mid-cycle webhooks, not the trigger", s.name, k))
        end
      end
      s.sync = false
      for j = i + 1, #c.steps do
        local k = c.steps[j].kind
        if k == "webhook" then break end
        if k == "respond" then s.sync = true break end
      end
      -- every match runs: the caller gets the list of transactions
      if s.pick == "all" then s.sync = false end
    end
  end
  c.index = index
end

-- on_failure = {cycle = NAME, hook = STEP} | {url = "http(s)://..."}
local function check_on_failure(v, where)
  if v == nil then return nil end
  local msg = "hw.cycle: 'on_failure' must be {cycle = NAME, hook = STEP} or {url = URL}"
  if type(v) ~= "table" then fail(where, msg) end
  for k in next, v do
    if k ~= "cycle" and k ~= "hook" and k ~= "url" then
      fail(where, string.format("hw.cycle: on_failure: unknown option '%s'", tostring(k)))
    end
  end
  local url, cy, hook = rawget(v, "url"), rawget(v, "cycle"), rawget(v, "hook")
  if url ~= nil then
    if cy ~= nil or hook ~= nil then fail(where, msg) end
    if type(url) ~= "string" or not url:lower():match("^https?://[^/]+") then
      fail(where, "hw.cycle: on_failure: 'url' must be an http:// or https:// URL")
    end
    return { url = url }
  end
  if type(cy) ~= "string" or type(hook) ~= "string" then fail(where, msg) end
  return { cycle = cy, hook = hook }
end

-- keep = {completed = DAYS, failed = DAYS, expired = DAYS, cancelled = DAYS}
local KEEP_DEFAULT = { completed = 14, failed = 30, expired = 14, cancelled = 14 }
local function check_keep(v, where)
  local keep = {}
  for k, d in pairs(KEEP_DEFAULT) do keep[k] = d end
  if v == nil then return keep end
  if type(v) ~= "table" then fail(where, "hw.cycle: 'keep' must be a table of days by state") end
  for k, d in next, v do
    if not KEEP_DEFAULT[k] then
      fail(where, string.format("hw.cycle: keep: '%s' is not a finished state (completed, failed, expired, cancelled)", tostring(k)))
    end
    if type(d) ~= "number" or d < 0 or d ~= d then
      fail(where, string.format("hw.cycle: keep.%s must be a number of days >= 0", k))
    end
    keep[k] = d
  end
  return keep
end

function hw.cycle(o)
  -- `return hw.cycle{...}` is a tail call, so the file's frame may be gone:
  -- fall back to the line of the first step.
  local where = core.where(2)
  if type(o) ~= "table" then fail(where, "hw.cycle expects a table") end
  if not where and type(o.steps) == "table" and type(o.steps[1]) == "table" then
    where = o.steps[1].where
  end
  local allowed = { name = true, connector = true, autostart = true,
                    sync_timeout = true, steps = true, description = true,
                    on_sync_timeout = true, on_failure = true, keep = true }
  for k in pairs(o) do
    if not allowed[k] then
      fail(where, string.format("hw.cycle: unknown option '%s'%s", tostring(k), U.did_you_mean(k, allowed)))
    end
  end
  local steps = o.steps
  if type(steps) == "table" then -- the list itself; the steps are hw's
    steps = {}
    for i = 1, rawlen(o.steps) do steps[i] = rawget(o.steps, i) end
  end
  local c = { __kind = "cycle", where = where, name = o.name,
              connector = o.connector or "default", steps = steps,
              autostart = o.autostart ~= false, description = o.description,
              sync_timeout = o.sync_timeout or 30,
              on_sync_timeout = o.on_sync_timeout or "fail" }
  if c.name ~= nil and (type(c.name) ~= "string" or c.name == "") then
    fail(where, "hw.cycle: 'name' must be a non-empty string")
  end
  if type(c.connector) ~= "string" then fail(where, "hw.cycle: 'connector' must be a connector name") end
  if type(c.sync_timeout) ~= "number" or c.sync_timeout <= 0 then
    fail(where, "hw.cycle: 'sync_timeout' must be a positive number of seconds")
  end
  if c.on_sync_timeout ~= "fail" and c.on_sync_timeout ~= "accept" then
    fail(where, "hw.cycle: 'on_sync_timeout' must be \"fail\" (answer 504) or \"accept\" (answer 202 with a status_url)")
  end
  normalize_steps(c, where)
  c.on_failure = check_on_failure(rawget(o, "on_failure"), where)
  c.keep = check_keep(rawget(o, "keep"), where)
  MADE[c] = true
  return c
end

function hw.connector(o)
  local where = core.where(2)
  if not where and type(o) == "table" then where = o.__file end
  if type(o) ~= "table" then fail(where, "hw.connector expects a table") end
  local allowed = { name = true, allowed_ips = true, base_url = true, headers = true,
                    secrets = true, description = true, allow_private = true }
  for k in pairs(o) do
    if not allowed[k] then
      fail(where, string.format("hw.connector: unknown option '%s'%s", tostring(k), U.did_you_mean(k, allowed)))
    end
  end
  if type(o.name) ~= "string" or o.name == "" then fail(where, "hw.connector: 'name' is required") end
  local c = { __kind = "connector", where = where, name = o.name,
              base_url = o.base_url, headers = raw_copy(o.headers or {}),
              allowed_ips = raw_copy(o.allowed_ips or {}), secrets = raw_copy(o.secrets or {}),
              allow_private = o.allow_private }
  if c.allow_private ~= nil and type(c.allow_private) ~= "boolean" then
    fail(where, "hw.connector: 'allow_private' must be true or false")
  end
  if c.base_url ~= nil and (type(c.base_url) ~= "string" or not c.base_url:match("^https?://[^/]+")) then
    fail(where, "hw.connector: 'base_url' must be an http:// or https:// URL")
  end
  if type(c.headers) ~= "table" then fail(where, "hw.connector: 'headers' must be a table") end
  if type(c.allowed_ips) ~= "table" then fail(where, "hw.connector: 'allowed_ips' must be a list") end
  local filter, err = core.ipfilter(c.allowed_ips)
  if not filter then fail(where, "hw.connector: allowed_ips: " .. err) end
  c.filter = filter
  MADE[c] = true
  return c
end

-- hw.url(cycle, hook): the full public URL of a webhook step.
function hw.url(cycle, hook)
  local cy = R.cycles[cycle]
  local h = cy and cy.hooks and cy.hooks[hook]
  if not h then error(string.format("hw.url: no webhook '%s' in cycle '%s'", tostring(hook), tostring(cycle)), 2) end
  return R.cfg.public_base .. "/hooks/" .. h.token
end

hw.http = require("hookwork.http")(hw)

-- The door: verification schemes and secrets from the environment.
hw.verify = setmetatable({}, { __index = function(_, k)
  error(string.format("hw.verify.%s: no such scheme%s", tostring(k), U.did_you_mean(k, V.schemes)), 2)
end })
for name, make in pairs(V.schemes) do
  rawset(hw.verify, name, function(o)
    local where = core.where(2)
    local ok, scheme = pcall(make, o)
    if not ok then fail(where, tostring(scheme)) end
    return scheme
  end)
end
hw.secret = V.secret(os.getenv)

-- Crypto and encodings for cycle code (OpenSSL underneath).
local function encoded(raw, enc, fn)
  if enc == nil or enc == "raw" then return raw end
  if enc == "hex" then return crypto.hex_encode(raw) end
  if enc == "base64" then return crypto.b64_encode(raw) end
  if enc == "base64url" then return crypto.b64url_encode(raw) end
  error(fn .. ": encoding must be \"hex\", \"base64\" or \"base64url\"", 3)
end

hw.crypto = {
  hmac = function(alg, key, msg, enc)
    return encoded(crypto.hmac(alg, key, msg), enc, "hw.crypto.hmac")
  end,
  equal = crypto.equal,
  random = function(n, enc) return encoded(crypto.random(n), enc, "hw.crypto.random") end,
}
for _, alg in ipairs({ "sha1", "sha256", "sha512", "md5" }) do
  hw.crypto[alg] = function(msg, enc)
    return encoded(crypto.digest(alg, msg), enc, "hw.crypto." .. alg)
  end
end
hw.base64 = { encode = crypto.b64_encode, decode = crypto.b64_decode }
hw.base64url = { encode = crypto.b64url_encode, decode = crypto.b64url_decode }
hw.hex = { encode = crypto.hex_encode, decode = crypto.hex_decode }
hw.time = { now = function() return R.now() end }

return hw
