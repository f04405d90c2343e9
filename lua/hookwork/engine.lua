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
local V = require "hookwork.verify"
local D = require "hookwork.dedupe"
local crypto = require "hookwork.crypto"
local Rec = require "hookwork.recovery"
local Ans = require "hookwork.answers"
local N = require "hookwork.nodes"
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
    for _, j in ipairs(job.kind == "all" and job.jobs or { job }) do
      if j.tx then M.drop(j) end
    end
    if job.caller then
      C.send(job.caller, Ans.store_unavailable(err))
    end
    if job.dedupe then D.forget(job.dedupe) end
    if job.on_end then job.on_end("failed") end
    return
  end
  if job.kind and job.caller then job.caller.stored = true end
  if job.kind == "buffered" then -- kept for a transaction that parks later
    if job.caller then C.send(job.caller, Ans.buffered()) end
    if job.on_end then job.on_end("buffered") end
    return
  end
  if job.kind == "all" then -- pick = "all": every match runs
    local ids = {}
    for i, j in ipairs(job.jobs) do ids[i] = tostring(j.tx) end
    if job.caller then C.send(job.caller, Ans.accepted_all(ids)) end
    if core.stopping() == 2 then return end -- recovered at the next start
    local left = #job.jobs
    for _, j in ipairs(job.jobs) do
      j.on_end = job.on_end and function(o)
        left = left - 1
        if left == 0 then job.on_end(o) end
      end
      M.ready(j)
    end
    return
  end
  if job.caller then job.caller.stored = true end
  if job.caller and (not sync or core.stopping() == 2) then
    C.send(job.caller, Ans.accepted(job.tx))
    job.caller = nil
    -- the other 202s of this commit go out before this run's steps
    if core.stopping() ~= 2 then core.later() end
  end
  if core.stopping() == 2 then return end -- recovered at the next start
  M.run_ready(job)
end

-- Content-Encoding: the decoded body (counted against --max-body), or
-- nil and a rejection (status, body, headers).
local function decode_body(r)
  local enc = (r.headers["content-encoding"] or ""):lower():gsub("%s", "")
  if enc == "" or enc == "identity" then return r.body end
  if enc ~= "gzip" and enc ~= "x-gzip" and enc ~= "deflate" then
    return nil, Ans.unsupported("unsupported content encoding " .. enc)
  end
  local max = (R.cfg.max_body or 0) > 0 and R.cfg.max_body or 1048576
  local out, err = crypto.inflate(r.body, enc == "deflate" and "deflate" or "gzip", max)
  if out then return out end
  if err == "too large" then
    return nil, Ans.too_large(max)
  end
  return nil, Ans.bad_request(string.format("body: cannot decode Content-Encoding %s (%s)", enc, err))
end

-- The door, in order: method, cycle state, IP filter, verification (over
-- the raw bytes), Content-Encoding, body, dedupe, fields; only then is
-- anything written.  Returns nil (answered or on its way) or a rejection
-- from the answers table: status, {error = message}, extra headers.  Shared by HTTP and t.post.
function E.submit(hook, r, caller)
  local cy = R.cycles[hook.cycle]
  local st = cy and cy.def and cy.def.steps[cy.def.index[hook.step] or 0]
  if not st then return Ans.unknown_webhook() end
  -- (the Allow header is added by the HTTP listener)
  if not st.method_set[r.method] then return Ans.method_not_allowed(r.method) end
  if cy.state ~= "running" then return Ans.stopped(cy.name) end
  if st.ip_filtered then
    local conn = R.connectors[cy.def.connector]
    if not (conn and conn.filter and core.ip_match(conn.filter, r.ip)) then
      R.count(R.metrics.rejected, cy.name .. "\0" .. st.name .. "\0ip")
      return Ans.forbidden(r.ip)
    end
  end
  if st.verify then
    local msg, reason, challenge, detail = V.check(st.verify, r, R.now())
    if msg then
      R.count(R.metrics.rejected, cy.name .. "\0" .. st.name .. "\0" .. reason)
      -- rate limited with the other rejection lines (ops.log)
      require("hookwork.ops").log("webhook", string.format("%s/%s: 401 for %s: %s%s", cy.name, st.name,
                                  r.ip, msg, detail and " (" .. detail .. ")" or ""))
      return Ans.unauthorized(msg, challenge)
    end
  end
  local busy = core.store_refusal()
  if busy then return Ans.store_unavailable(busy) end
  local body, dstatus, dbody, dheaders = decode_body(r)
  if not body then return dstatus, dbody, dheaders end
  local preq = { headers = r.headers, body = body }
  local obj, is_form, kind = F.parse_body(preq)
  if obj == nil then return Ans.bad_request(is_form) end
  local mt = F.media_type(r.headers)
  local data, err, status = F.to_data(st.spec, obj, is_form, kind, mt)
  if not data then return Ans.rejected(status, err) end
  local request = { method = r.method, path = r.path, headers = r.headers,
                    query = U.parse_query(r.query), body = body, ip = r.ip,
                    json = kind == "json" and obj or nil,
                    form = is_form and obj or nil }
  local key
  if st.dedupe then
    local kerr
    key, kerr = D.key(st.dedupe, request, obj)
    if kerr then
      core.log("webhook", string.format("%s/%s: %s", cy.name, st.name, kerr))
      return Ans.dedupe_failed()
    end
    local first = key and D.find(cy.name, st.name, key, R.now())
    if key and not first then -- several nodes: taken in the store first (SQLite: nil)
      local cerr
      first, cerr = D.claim(cy.name, st.name, key, st.dedupe.window, R.now())
      if cerr then return Ans.store_unavailable(cerr) end
    end
    if first then
      if caller then caller.tx = first.tx end
      D.reply(first, st.sync, caller)
      return nil
    end
  end
  local job, jstatus, jbody, jheaders = A.accept(cy, st, data, obj, request, caller)
  if key and not (job and job.tx) then D.unclaim(cy.name, st.name, key) end
  if not job then return jstatus, jbody, jheaders end
  if job.kind and caller then job.caller, job.on_end = caller, caller.on_end end
  -- each run takes its place in its transaction's queue now, in arrival
  -- order; it runs once durable
  if job.kind == "all" then
    for _, j in ipairs(job.jobs) do M.enqueue(j) end
  elseif not job.kind then
    M.enqueue(job)
  end
  -- (a request kept by `early` or resuming several transactions has no
  -- one transaction to remember it by)
  if key and job.tx then
    job.dedupe = D.note(cy.name, st.name, key, job.tx, st.dedupe.window, R.now())
    if caller and st.sync then
      local e = job.dedupe
      caller.on_answer = function(...) D.record(e, ...) end
    end
  end
  core.spawn(start_job, job, st.sync)
  return nil
end

-- CORS: the headers an answer carries for this request's Origin.
local function cors_headers(c, origin)
  if not origin then return nil end
  local allowed = c.any
  if not allowed then
    for _, o in ipairs(c.origins) do if o == origin then allowed = true break end end
  end
  if not allowed then return nil end
  return { "Access-Control-Allow-Origin: " .. (c.any and "*" or origin), "Vary: Origin" }
end

-- A preflight OPTIONS, answered by the engine (never stored).
local function preflight(st, caller)
  local list = {}
  for m in pairs(st.method_set) do list[#list + 1] = m end
  table.sort(list)
  local h = { "Access-Control-Allow-Methods: " .. table.concat(list, ", "),
              "Access-Control-Allow-Headers: " .. table.concat(st.cors.headers, ", "),
              "Access-Control-Max-Age: " .. U.scalar_string(st.cors.max_age) }
  if not caller.cors then h = {} end
  C.send(caller, Ans.preflight(h))
end

local function handle(r, caller)
  local stok, sid, secret = r.path:match("^/hooks/([%w_%-]+)/status/(%d+)%-([%w_%-]+)$")
  if stok and R.tokens[stok] then return A.status(r, caller, stok, sid, secret) end
  local token = r.path:match("^/hooks/([%w_%-]+)/?$")
  local hook = token and R.tokens[token]
  caller.cycle, caller.step = hook and hook.cycle, hook and hook.step
  if not hook then
    local status, body = Ans.unknown_webhook()
    require("hookwork.ops").reject(nil, nil, status, body.error, r.ip)
    return C.send(caller, status, body)
  end
  local cy = R.cycles[hook.cycle]
  local st = cy and cy.def and cy.def.steps[cy.def.index[hook.step] or 0]
  if st and st.cors then
    caller.cors = cors_headers(st.cors, r.headers.origin)
    if r.method == "OPTIONS" then return preflight(st, caller) end
  end
  local status, body, headers = E.submit(hook, r, caller)
  if status then
    -- a 401 was logged with its detail by the door already
    require("hookwork.ops").reject(hook.cycle, hook.step, status, body.error, r.ip, status == 401)
    if status == 405 then status, body, headers = Ans.method_not_allowed(r.method, E.allow(hook)) end
    C.send(caller, status, body, headers)
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
    C.send(caller, Ans.internal())
  end
end

-- A request the C accept path (core/fastpath.c) stored (and, fire and
-- forget, answered 202): its run, started here as a new run of the ready
-- queue.  The data is decoded now, from the text stored, and the request's
-- JSON body (req: method, path, headers, query, body, ip, as E.webhook gets
-- them).  h: the waiting HTTP request of a synchronous trigger (its caller,
-- as A.accept sets one up, with the sync_timeout counted from the accept).
function E.c_accepted(tx, cycle, step, data_json, req, accepted, accepted_mono, h)
  local cy = R.cycles[cycle]
  local def = L.def_of(cycle)
  local v, is_form, kind = F.parse_body(req) -- a JSON object (core/fastpath.c)
  if kind == "json" then req.json = v elseif is_form then req.form = v end
  local job = { tx = tx, run = 1, data = U.decode(data_json, "lax") or {}, data_json = data_json,
                cycle = cycle, entry = step, accepted = accepted, def = def, request = req }
  if h then
    local c = C.new(h, cycle, step)
    c.tx, c.run, c.stored = tx, 1, true
    job.caller = c
    if def then
      c.timeout = def.sync_timeout
      c.deadline = R.clock() - (core.mono() - accepted_mono) + def.sync_timeout
      if def.on_sync_timeout == "accept" then
        c.token = cy and cy.hooks and cy.hooks[step] and cy.hooks[step].token
        c.on_timeout = A.hand_over
      end
    end
  else
    R.count(R.metrics.webhook, cycle .. "\0" .. step .. "\0" .. 202)
  end
  M.enqueue(job)
  M.run_ready(job)
end

-- A request the C accept path wrote whose commit failed: not stored, 503.
function E.c_refused(h, cycle, step, reason)
  C.send(C.new(h, cycle, step), Ans.store_unavailable(reason))
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
  require("hookwork.nodes").start() -- several nodes: the lease, before recovery
  local ids = core.last_ids()
  -- the backlog streams in, a page at a time (recovery.lua)
  Rec.start(ids.tx, ids.job)
  Rec.feed()
end

local last_expiry, last_purge = 0, 0
-- now: R.clock(), the clock deadlines are on; stored times are wall.
local function expire(now, force)
  if not force and now - last_expiry < 0.5 then return end
  -- PostgreSQL out of reach: its reads would only fail (and log) each time
  if not force and R.cfg.store == "postgres" and core.store_refusal() then return end
  last_expiry = now
  A.expire(now)
  if now - last_purge > 600 then
    -- answers kept for status URLs live as long as finished transactions
    -- (14 days)
    last_purge = now
    core.write("sync_purge", R.now() - 14 * 86400)
  end
end

function E.tick()
  require("hookwork.ops").drain_c() -- the C accept path's rejections
  local now, clock = R.now(), R.clock()
  C.tick(clock)
  if R.cfg.mode ~= 2 then
    -- several nodes: one of them expires, purges and retains
    local sweeper = N.sweeper()
    if sweeper then expire(clock) end
    D.tick(now)
    require("hookwork.ops").wake(clock) -- retry_at is on the wait clock, as expires_at
    require("hookwork.ops").sweep(now)
    if R.cfg.mode == 0 and sweeper then require("hookwork.retain").tick(now) end
    N.tick(clock)
  end
  A.gc()
  Rec.feed()
end

function E.shutdown() C.shutdown() end
function E.expire_now() expire(R.clock(), true) end

-- Admin routes run as a coroutine (reads go to the reader thread) and
-- answer through h.
function E.admin(method, path, query, body, h)
  return require("hookwork.admin").serve(method, path, query, body, h)
end

function E.check_main(files) return require("hookwork.check").main(files) end
function E.test_main(paths) return require("hookwork.harness").main(paths, E) end

return E
