-- engine: the entry points C calls (start, rescan, webhook, tick, admin,
-- shutdown, check_main, test_main) and the accept path every webhook
-- request, link and test post goes through.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local F = require "hookwork.fields"
local C = require "hookwork.callers"
local L = require "hookwork.loader"
local M = require "hookwork.run"
local A = require "hookwork.accept"
local core = R.core
local E = {}

-- The start of a run for an accepted request: durable first, then 202
-- (fire-and-forget) and the run itself.  When the commit failed, the request
-- was not stored: 503 (retry), and nothing runs.  At the shutdown deadline a
-- stored request is acknowledged and runs after the restart.
local function start_job(job, sync)
  local ok, err = core.commit(job.seq)
  if not ok then
    A.forget(job)
    if job.caller then
      C.json(job.caller, 503, { error = "store unavailable: " .. tostring(err) }, { "Retry-After: 1" })
    end
    if job.on_end then job.on_end("failed") end
    return
  end
  if job.caller then job.caller.stored = true end
  if job.caller and (not sync or core.stopping() == 2) then
    C.answer(job.caller, 202, "application/json", nil,
             '{"accepted":true,"transaction":"' .. job.tx .. '"}')
    job.caller = nil
  end
  if core.stopping() == 2 then return end -- recovered at the next start
  M.run_job(job)
end

-- Validates a request for a webhook and starts it; returns nil or an
-- answer (status, message) for a rejection.  Shared by HTTP and t.post.
function E.submit(hook, r, caller)
  local cy = R.cycles[hook.cycle]
  local st = cy and cy.def and cy.def.steps[cy.def.index[hook.step] or 0]
  if not st then return 404, "unknown webhook" end
  if not st.method_set[r.method] then return 405, "method " .. r.method .. " not allowed" end
  if cy.state ~= "running" then return 503, string.format("cycle '%s' is stopped", cy.name) end
  if st.ip_filtered then
    local conn = R.connectors[cy.def.connector]
    if not (conn and conn.filter and core.ip_match(conn.filter, r.ip)) then
      R.count(R.metrics.rejected, cy.def.connector .. "\0ip")
      return 403, string.format("address %s is not allowed for this webhook", r.ip)
    end
  end
  local busy = core.store_refusal()
  if busy then return 503, "store unavailable: " .. busy, { "Retry-After: 1" } end
  local obj, is_form = F.parse_body(r)
  if not obj then return 400, is_form end
  local data, err = F.extract(st.spec, obj, is_form)
  if not data then return 400, err end
  local request = { method = r.method, path = r.path, headers = r.headers,
                    query = U.parse_query(r.query), body = r.body, ip = r.ip,
                    json = (not is_form) and obj or nil, form = is_form and obj or nil }
  local job, status, msg = A.accept(cy, st, data, obj, request, caller)
  if not job then return status, msg end
  core.spawn(start_job, job, st.sync)
  return nil
end

local function handle(r, caller)
  local token = r.path:match("^/hooks/([%w_%-]+)/?$")
  local hook = token and R.tokens[token]
  caller.cycle, caller.step = hook and hook.cycle, hook and hook.step
  if not hook then return C.json(caller, 404, { error = "unknown webhook" }) end
  local status, msg, headers = E.submit(hook, r, caller)
  if status then
    if status == 405 then headers = { "Allow: " .. E.allow(hook) } end
    C.json(caller, status, { error = msg }, headers)
  end
end

function E.allow(hook)
  local cy = R.cycles[hook.cycle]
  local st = cy.def.steps[cy.def.index[hook.step]]
  local list = {}
  for m in pairs(st.method_set) do list[#list + 1] = m end
  table.sort(list)
  return table.concat(list, ", ")
end

-- Every request handed over is answered exactly once, through its caller,
-- whatever happens in between.
function E.webhook(r, h)
  local caller = C.new(h)
  local ok, err = pcall(handle, r, caller)
  if not ok then
    core.log("webhook", tostring(err))
    C.json(caller, 500, { error = "internal error" })
  end
end

function E.rescan()
  local changed, changes = L.scan(R.cfg.cycles_dir)
  if changed then
    L.rebuild()
    local parts = {}
    for _, c in ipairs(changes) do
      parts[#parts + 1] = c.file .. " " .. c.what
        .. (c.kept and " (the previous version stays)" or "")
    end
    core.log("loader", "reloaded: " .. table.concat(parts, ", "))
  end
end

-- Start-up: registry from the store and the directory, then every job the
-- store still holds (accepted but unfinished) runs again, in arrival order.
function E.start()
  R.cfg = core.config()
  L.restore()
  L.scan(R.cfg.cycles_dir)
  L.rebuild()
  local ids = L.rows("max_ids")[1]
  R.ids.tx, R.ids.job, R.ids.hist = ids.tx, ids.job, ids.hist
  local n = 0
  local function recover(j, run)
    local req = U.decode(j.request or "{}", "lax") or {}
    if type(req.body) == "string" and req.body:match("^%s*{") then req.json = U.decode(req.body, "lax") end
    core.spawn(M.run_job, { id = j.id, tx = j.tx, run = run or j.run,
                            cycle = j.cycle, entry = j.entry, ckpt_step = j.ckpt_step,
                            data = U.decode(j.ckpt_data or j.data or "{}", "lax") or {},
                            request = req })
    n = n + 1
  end
  for _, j in ipairs(L.rows("tx_running")) do
    j.tx, j.id = j.id, nil
    recover(j, 1)
  end
  for _, j in ipairs(L.rows("jobs_all")) do recover(j) end
  if n > 0 then core.log("engine", n .. " unfinished runs resume") end
end

local last_expiry = 0
local function expire(now, force)
  if not force and now - last_expiry < 0.5 then return end
  last_expiry = now
  for _, row in ipairs(core.query("expired", now)) do
    core.write("tx_expire", row.id, now)
    local key = A.pos_of(row.id)
    local p = key and (R.pend.cur[key] or R.pend.prev[key])
    if p and p.tx == row.id then p.expired = true end
  end
end

function E.tick()
  local now = R.now()
  C.tick(now)
  if R.cfg.mode ~= 2 then expire(now) end
  A.rotate(now)
end

function E.shutdown() C.shutdown() end
function E.expire_now() expire(R.now(), true) end

function E.admin(method, path, query, body)
  return require("hookwork.admin").route(method, path, query, body)
end

function E.check_main(files) return require("hookwork.check").main(files) end
function E.test_main(paths) return require("hookwork.harness").main(paths, E) end

return E
