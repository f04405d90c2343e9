-- admin: the admin API routes and the Prometheus metrics.  Answers
-- (status, content type, body); transactions come straight from the store
-- as JSON built by SQLite on the reader thread (search.lua): every route
-- runs as a coroutine, so a read over millions of rows never holds the
-- loop.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local L = require "hookwork.loader"
local S = require "hookwork.search"
local O = require "hookwork.ops"
local core = R.core
local A = {}

local JSON = "application/json"

local function json(status, v) return status, JSON, U.encode(v) end
-- allow: the Allow header of a 405
local function err(status, msg, allow) return status, JSON, U.encode({ error = msg }), allow end

local array = U.json.array

local function counts()
  local by = {}
  for _, r in ipairs(S.counts()) do
    by[r.cycle] = by[r.cycle] or { running = 0, waiting = 0, completed = 0, failed = 0, expired = 0 }
    by[r.cycle][r.state] = r.n
  end
  return by
end

-- The door of a webhook as the admin API shows it: scheme names only,
-- never a secret.
local function door_verify(list)
  local names = {}
  for i, v in ipairs(list) do names[i] = v.scheme end
  return array(names)
end

local function cycle_view(cy, by)
  local hooks = {}
  if cy.def then
    for _, s in ipairs(cy.def.steps) do
      if s.kind == "webhook" then
        local h = cy.hooks[s.name]
        hooks[#hooks + 1] = { step = s.name, url = R.cfg.public_base .. "/hooks/" .. h.token,
                              ip_filtered = s.ip_filtered == true,
                              match = s.match and s.match.request or nil,
                              methods = array((function()
                                local l = {}
                                for m in pairs(s.method_set) do l[#l + 1] = m end
                                table.sort(l)
                                return l
                              end)()),
                              synchronous = s.sync,
                              verify = s.verify and door_verify(s.verify) or nil,
                              dedupe = s.dedupe and true or nil,
                              cors = s.cors and true or nil }
      end
    end
  end
  return { name = cy.name, state = cy.state, file = cy.file, load_error = cy.load_error,
           connector = cy.connector or (cy.def and cy.def.connector) or "default",
           webhooks = array(hooks),
           counts = by[cy.name] or { running = 0, waiting = 0, completed = 0, failed = 0, expired = 0 } }
end

local function cycles()
  local by, list, names = counts(), {}, {}
  for name in pairs(R.cycles) do names[#names + 1] = name end
  table.sort(names)
  for _, n in ipairs(names) do list[#list + 1] = cycle_view(R.cycles[n], by) end
  return json(200, array(list))
end

local function set_state(name, state)
  local cy = R.cycles[name]
  if not cy then return err(404, string.format("no cycle '%s'", name)) end
  if not cy.def then return err(409, string.format("cycle '%s' did not load: %s", name, tostring(cy.load_error))) end
  L.set_state(name, state)
  core.log("admin", string.format("cycle '%s' %s", name, state))
  return json(200, cycle_view(cy, counts()))
end

local function transactions(query)
  local f, e = S.filter(U.parse_query(query))
  if not f then return err(400, e) end
  local text, nxt = S.list(f)
  -- Rows written before the engine checked its UTF-8 may hold bytes that
  -- are not; the answer must be valid JSON whatever the store holds.
  text = U.json.utf8_clean(text)
  if not f.page then return 200, JSON, text end
  return 200, JSON, '{"transactions":' .. text .. ',"next":' .. (nxt and ('"' .. nxt .. '"') or "null") .. "}"
end

local function transaction(id)
  local n = math.tointeger(tonumber(id))
  local text = n and S.get(n)
  if not text then return err(404, "no transaction " .. id) end
  return 200, JSON, U.json.utf8_clean(text)
end

-- An ops.lua answer: {status, body} or {status, error}.
local function op_answer(a)
  if a.error then return err(a.status, a.error) end
  return json(a.status, a.body)
end

local function tx_action(id, action, body)
  local opts = {}
  if body and body:match("%S") then
    opts = U.decode(body)
    if type(opts) ~= "table" then return err(400, "expected a JSON object") end
  end
  if action == "retry" then return op_answer(O.retry(id, opts.from)) end
  if action == "replay" then return op_answer(O.replay(id)) end
  if action == "cancel" then return op_answer(O.cancel(id)) end
  return err(404, "not found")
end

local function bulk_retry(query)
  local q = U.parse_query(query)
  local since
  if q.since and q.since ~= "" then
    since = S.parse_time(q.since)
    if not since then return err(400, "since: expected unix seconds or an ISO 8601 time") end
  end
  local ids = S.failed_ids(q.cycle ~= "" and q.cycle or nil, q.step ~= "" and q.step or nil, since, 10000)
  return op_answer(O.retry_many(ids))
end

local function rejections(query)
  local q = U.parse_query(query)
  local limit = 100
  if q.limit and q.limit ~= "" then
    limit = math.tointeger(tonumber(q.limit))
    if not limit or limit < 1 then return err(400, "limit must be a positive integer") end
    if limit > 10000 then limit = 10000 end
  end
  return json(200, array(O.rejections(limit)))
end

local function connector_view(c)
  local names = {}
  for k in pairs(c.headers or {}) do names[#names + 1] = k end
  table.sort(names)
  return { name = c.name, file = c.file, base_url = c.base_url,
           allowed_ips = array(U.copy(c.allowed_ips or {})),
           allowed_ips_source = c.override and "api" or "file",
           header_names = array(names) }
end

local function connectors()
  local names, list = {}, {}
  for n in pairs(R.connectors) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do list[#list + 1] = connector_view(R.connectors[n]) end
  return json(200, array(list))
end

local function put_connector(name, body)
  local c = R.connectors[name]
  if not c then return err(404, string.format("no connector '%s'", name)) end
  local v = U.decode(body)
  -- a JSON array ([] included, {} not: the codec marks arrays)
  if type(v) ~= "table" or not U.is_array(v.allowed_ips) then
    return err(400, 'expected {"allowed_ips": [addresses or CIDR blocks]}')
  end
  for i, e in ipairs(v.allowed_ips) do
    if type(e) ~= "string" then return err(400, string.format("allowed_ips: entry %d is not a string", i)) end
  end
  local e = L.put_connector(name, v.allowed_ips)
  if e then return err(400, "allowed_ips: " .. e) end
  core.log("admin", string.format("connector '%s' allowed_ips set by the API", name))
  return json(200, connector_view(c))
end

local function esc(s) return (tostring(s):gsub("\\", "\\\\"):gsub('"', '\\"'):gsub("\n", "\\n")) end

local function metrics()
  local out = {}
  -- several nodes: every series carries this node's name (`node`, last)
  local node = require("hookwork.nodes").label()
  local nl = node and ('node="' .. esc(node) .. '"')
  local function line(s)
    if nl and s:sub(1, 1) ~= "#" then
      local name, labels, rest = s:match("^([%w_]+){(.*)}( %S+)$")
      if name then
        s = name .. "{" .. labels .. "," .. nl .. "}" .. rest
      else
        name, rest = s:match("^([%w_]+)( %S+)$")
        s = name .. "{" .. nl .. "}" .. rest
      end
    end
    out[#out + 1] = s
  end
  local function series(name, help, kind, t, labels)
    line("# HELP " .. name .. " " .. help)
    line("# TYPE " .. name .. " " .. kind)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local parts, i = {}, 0
      for v in (k .. "\0"):gmatch("(.-)%z") do
        i = i + 1
        parts[#parts + 1] = labels[i] .. '="' .. esc(v) .. '"'
      end
      line(string.format("%s{%s} %s", name, table.concat(parts, ","), U.scalar_string(t[k])))
    end
  end
  require("hookwork.ops").drain_c() -- (the C accept path's rejections)
  local m = R.metrics
  series("hookwork_webhook_requests_total", "Webhook requests by cycle, step and answer status.",
         "counter", m.webhook, { "cycle", "step", "status" })
  series("hookwork_tasks_total", "Steps run (the task usage).", "counter", m.tasks, { "cycle" })
  local tx = {}
  for cycle, c in pairs(counts()) do
    for state, n in pairs(c) do tx[cycle .. "\0" .. state] = n end
  end
  series("hookwork_transactions", "Transactions by cycle and state.", "gauge", tx, { "cycle", "state" })
  series("hookwork_outbound_requests_total", "Outbound HTTP requests by cycle, method and status class.",
         "counter", m.outbound, { "cycle", "method", "status" })
  series("hookwork_rejected_requests_total", "Webhook requests rejected at the door (IP filter, verify) by cycle, step and reason.",
         "counter", m.rejected, { "cycle", "step", "reason" })
  local cpath, crej, luapath = core.accept_paths()
  series("hookwork_accept_path_total",
         "Webhook requests by accept path: accepted in C, rejected in C, or handed to Lua.",
         "counter", { c = cpath, c_rejected = crej, lua = luapath }, { "path" })
  local kept, dropped = require("hookwork.accept").metrics()
  series("hookwork_buffered_total", "Mid-cycle requests kept by an early window.",
         "counter", kept, { "cycle", "step" })
  series("hookwork_buffered_expired_total", "Kept requests dropped when their early window ended.",
         "counter", dropped, { "cycle", "step" })
  line("# HELP hookwork_outbound_seconds Outbound request latency.")
  line("# TYPE hookwork_outbound_seconds histogram")
  for _, b in ipairs({ 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }) do
    line(string.format('hookwork_outbound_seconds_bucket{le="%g"} %d', b, m.latency[b] or 0))
  end
  line(string.format('hookwork_outbound_seconds_bucket{le="+Inf"} %d', m.latency.count or 0))
  line(string.format("hookwork_outbound_seconds_sum %.6f", m.latency.sum or 0))
  line(string.format("hookwork_outbound_seconds_count %d", m.latency.count or 0))
  line("# HELP hookwork_runs_in_flight Run coroutines alive now.")
  line("# TYPE hookwork_runs_in_flight gauge")
  line(string.format("hookwork_runs_in_flight %d", core.config().runs))
  local st = core.stats()
  line("# HELP hookwork_loop_iteration_seconds Work of the loop thread per loop iteration (the time poll slept left out).")
  line("# TYPE hookwork_loop_iteration_seconds histogram")
  for i, le in ipairs(st.loop_le) do
    line(string.format('hookwork_loop_iteration_seconds_bucket{le="%g"} %d', le, st.loop_counts[i]))
  end
  line(string.format('hookwork_loop_iteration_seconds_bucket{le="+Inf"} %d', st.loop_n))
  line(string.format("hookwork_loop_iteration_seconds_sum %.6f", st.loop_busy))
  line(string.format("hookwork_loop_iteration_seconds_count %d", st.loop_n))
  line("# HELP hookwork_loop_iteration_cpu_seconds CPU time of the loop thread per loop iteration (less than the work's wall time when the thread waited for a CPU).")
  line("# TYPE hookwork_loop_iteration_cpu_seconds histogram")
  for i, le in ipairs(st.loop_le) do
    line(string.format('hookwork_loop_iteration_cpu_seconds_bucket{le="%g"} %d', le, st.loop_cpu_counts[i]))
  end
  line(string.format('hookwork_loop_iteration_cpu_seconds_bucket{le="+Inf"} %d', st.loop_n))
  line(string.format("hookwork_loop_iteration_cpu_seconds_sum %.6f", st.loop_cpu))
  line(string.format("hookwork_loop_iteration_cpu_seconds_count %d", st.loop_n))
  line("# HELP hookwork_loop_iteration_max_seconds The longest loop iteration since the start (wall time of its work).")
  line("# TYPE hookwork_loop_iteration_max_seconds gauge")
  line(string.format("hookwork_loop_iteration_max_seconds %.6f", st.loop_max))
  line("# HELP hookwork_loop_iteration_cpu_max_seconds The most CPU time one loop iteration took since the start.")
  line("# TYPE hookwork_loop_iteration_cpu_max_seconds gauge")
  line(string.format("hookwork_loop_iteration_cpu_max_seconds %.6f", st.loop_cpu_max))
  line("# HELP hookwork_lua_allocations_total Blocks the Lua heap allocated or grew.")
  line("# TYPE hookwork_lua_allocations_total counter")
  line(string.format("hookwork_lua_allocations_total %d", st.allocs))
  line("# HELP hookwork_lua_heap_bytes Bytes the Lua heap holds.")
  line("# TYPE hookwork_lua_heap_bytes gauge")
  line(string.format("hookwork_lua_heap_bytes %d", st.heap))
  line("# HELP hookwork_store_uncommitted_writes Writes queued, in flight or kept for retry.")
  line("# TYPE hookwork_store_uncommitted_writes gauge")
  line(string.format("hookwork_store_uncommitted_writes %d", core.store_pending()))
  line("# HELP hookwork_store_refusing 1 while new requests get 503 (commits fail, or too much waits).")
  line("# TYPE hookwork_store_refusing gauge")
  line(string.format("hookwork_store_refusing %d", core.store_refusal() and 1 or 0))
  return 200, "text/plain; version=0.0.4", table.concat(out, "\n") .. "\n"
end

function A.route(method, path, query, body)
  local name, action = path:match("^/api/cycles/([^/]+)/(%a+)$")
  if path == "/api/cycles" then
    if method ~= "GET" then return err(405, "use GET", "GET") end
    return cycles()
  elseif name then
    if method ~= "POST" then return err(405, "use POST", "POST") end
    if action == "start" then return set_state(U.url_decode(name), "running") end
    if action == "stop" then return set_state(U.url_decode(name), "stopped") end
    return err(404, "not found")
  elseif path == "/api/transactions" then
    if method ~= "GET" then return err(405, "use GET", "GET") end
    return transactions(query)
  elseif path == "/api/transactions/retry" and method == "POST" then
    return bulk_retry(query)
  elseif path:match("^/api/transactions/[^/]+/%a+$") then
    if method ~= "POST" then return err(405, "use POST", "POST") end
    local id, action = path:match("^/api/transactions/([^/]+)/(%a+)$")
    return tx_action(U.url_decode(id), action, body)
  elseif path == "/api/rejections" then
    if method ~= "GET" then return err(405, "use GET", "GET") end
    return rejections(query)
  elseif path:match("^/api/transactions/[^/]+$") then
    if method ~= "GET" then return err(405, "use GET", "GET") end
    return transaction(path:match("([^/]+)$"))
  elseif path == "/api/connectors" then
    if method ~= "GET" then return err(405, "use GET", "GET") end
    return connectors()
  elseif path:match("^/api/connectors/[^/]+$") then
    local n = U.url_decode(path:match("([^/]+)$"))
    if method == "GET" then
      if not R.connectors[n] then return err(404, string.format("no connector '%s'", n)) end
      return json(200, connector_view(R.connectors[n]))
    elseif method == "PUT" then
      return put_connector(n, body)
    end
    return err(405, "use GET or PUT", "GET, PUT")
  elseif path == "/metrics" then
    return metrics()
  end
  return err(404, "not found")
end

-- Runs a route as a coroutine and answers h with what it returns; an
-- error in a route is a 500 that names nothing internal.
function A.serve(method, path, query, body, h)
  core.spawn(function()
    local ok, status, ctype, text, allow = pcall(A.route, method, path, query, body)
    if not ok then
      core.log("admin", method .. " " .. path .. ": " .. tostring(status))
      status, ctype, text, allow = 500, JSON, '{"error":"internal error"}', nil
    end
    core.answer(h, status, ctype, allow and { "Allow: " .. allow } or nil, text or "")
  end)
end

return A
