-- http: hw.http.get/post/put/patch/delete/request.  Builds the request
-- (connector base_url and headers, query, JSON), checkpoints the run, then
-- yields while libcurl works (core.http) and shapes the response.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local core = R.core

local function origin(u)
  local o = u:lower():match("^(https?://[^/?#]+)")
  return o
end

local function current_run()
  return R.runs[coroutine.running()]
end

-- Connector headers go with relative URLs and with absolute URLs on the
-- base_url's origin, never elsewhere; the call's own headers win, names
-- compared without case.
local function build_headers(conn, use_conn, own, auth)
  -- the common case (no headers from anywhere): no closures, no sort
  if not auth and not (own and next(own)) and
     not (use_conn and conn.headers and next(conn.headers)) then
    return {}, {}, 0
  end
  local order, byname, from_conn = {}, {}, {}
  local function put(k, v, c)
    local bad = U.header_problem(k, v)
    if bad then error("hw.http: " .. bad, 0) end
    local lk = tostring(k):lower()
    if not byname[lk] then order[#order + 1] = lk end
    byname[lk] = tostring(k) .. ": " .. tostring(v)
    from_conn[lk] = c
  end
  if use_conn then for k, v in pairs(conn.headers or {}) do put(k, v, true) end end
  for k, v in pairs(own or {}) do put(k, v) end
  if auth and not byname["authorization"] then
    if auth.bearer then
      put("Authorization", "Bearer " .. auth.bearer)
    elseif auth.user then
      local b64 = require("hookwork.base64")
      put("Authorization", "Basic " .. b64(auth.user .. ":" .. (auth.password or "")))
    end
  end
  -- the connector's own headers first: they stay on the origin, and a
  -- redirect elsewhere drops them (core.http's origin_headers)
  table.sort(order, function(a, b)
    if (from_conn[a] or false) ~= (from_conn[b] or false) then return from_conn[a] == true end
    return a < b
  end)
  local nconn = 0
  for _, k in ipairs(order) do if from_conn[k] then nconn = nconn + 1 end end
  return byname, order, nconn
end

local function resolve_url(url, conn)
  local scheme = url:match("^(%a[%w+.%-]*):")
  local absolute = scheme ~= nil and url:lower():match("^https?://") ~= nil
  if scheme and not absolute then
    error(string.format("%s: scheme '%s' is not allowed (only http and https)", url, scheme), 0)
  end
  if absolute then
    return url, conn.base_url ~= nil and origin(url) == origin(conn.base_url)
  end
  if not conn.base_url then
    error(string.format("relative URL '%s' needs a base_url on the cycle's connector", url), 0)
  end
  local base = conn.base_url:gsub("/+$", "")
  if url:sub(1, 1) ~= "/" then url = "/" .. url end
  return base .. url, true
end

-- made once, not per call (the fan-out makes thousands of calls a second)
local BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local CLASS = {}
for c = 1, 9 do CLASS[c] = c .. "xx" end

local function record_metrics(run, method, status, seconds)
  local cycle = run and run.cycle or "-"
  local class = status > 0 and (CLASS[status // 100] or (math.floor(status / 100) .. "xx")) or "error"
  R.count(R.metrics.outbound, cycle .. "\0" .. method .. "\0" .. class)
  local lat = R.metrics.latency
  lat.count = (lat.count or 0) + 1
  lat.sum = (lat.sum or 0) + seconds
  -- cumulative buckets: every bound at or above the duration
  for i = #BUCKETS, 1, -1 do
    local b = BUCKETS[i]
    if not (seconds <= b) then break end
    lat[b] = (lat[b] or 0) + 1
  end
end

local OPS -- hookwork.ops, required on first use as before (not at load time)

local function request(o)
  if type(o) ~= "table" then error("hw.http.request expects a table", 2) end
  local run = current_run()
  if not run then error("hw.http: only inside a cycle run", 2) end
  local conn = run.connector or {}
  local method = tostring(o.method or "GET"):upper()
  if type(o.url) ~= "string" then error("hw.http: 'url' must be a string", 2) end
  local url, same_origin = resolve_url(o.url, conn)
  if o.query and next(o.query) then
    url = url .. (url:find("?", 1, true) and "&" or "?") .. U.encode_query(o.query)
  end
  local byname, order, nconn = build_headers(conn, same_origin, o.headers, o.auth)
  local body = o.body
  if o.json ~= nil then
    body = U.encode(o.json, "json")
    if not byname["content-type"] then
      order[#order + 1] = "content-type"
      byname["content-type"] = "Content-Type: application/json"
    end
  end
  local list = {}
  for i, k in ipairs(order) do list[i] = byname[k] end
  local req = { method = method, url = url, headers = list,
                body = body ~= nil and tostring(body) or nil,
                timeout = tonumber(o.timeout) or 30, retries = tonumber(o.retries) or 0,
                follow = o.follow, insecure = o.insecure,
                allow_private = conn.allow_private == true, origin_headers = nconn,
                max_response = o.max_response }
  run:checkpoint()
  local res = (R.transport or core.http)(req)
  -- nothing comes back when the engine is torn down, or when there was no
  -- memory to build the response
  if res == nil then error(method .. " " .. url .. ": no response (engine stopping or out of memory)", 0) end
  -- a cancelled transaction stops at its next yield (this one)
  OPS = OPS or require("hookwork.ops")
  if run.job and OPS.is_cancelled(run.job.tx) then error("cancelled", 0) end
  run.dirty = true
  run:note_attempts(method, url, res.attempts)
  record_metrics(run, method, res.status or 0, res.seconds or 0)
  if res.error then error(res.error, 0) end
  local ct = res.headers and res.headers["content-type"] or ""
  local out = { status = res.status, headers = res.headers or {}, body = res.body or "" }
  -- a remote system's text that is not UTF-8 reads as U+FFFD (lax): its
  -- JSON is still JSON; anything else strict
  if ct:find("json", 1, true) and out.body ~= "" then out.json = U.decode(out.body, "lax") end
  if o.fail_on_status and out.status >= 400 then
    error(string.format("%s %s: status %d", method, url, out.status), 0)
  end
  return out
end

return function(hw)
  local http = { request = request }
  for _, m in ipairs({ "get", "post", "put", "patch", "delete" }) do
    http[m] = function(url, opts)
      local o = {}
      for k, v in pairs(opts or {}) do o[k] = v end
      o.method, o.url = m:upper(), url
      return request(o)
    end
  end
  return http
end
