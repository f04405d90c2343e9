-- loader: reads cycle and connector files into sandboxes and keeps the
-- registry (R.cycles, R.connectors, R.tokens) in step with the directory.
-- A file that fails to load keeps its previous version serving; its error
-- is the cycle's load_error until the file is fixed.
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local S = require "hookwork.sandbox"
local core = R.core
local L = { files = {}, hook_tokens = {}, states = {}, overrides = {}, gone = {} }

-- Test harness: no file loaded, no token, state or override kept.
function L.reset() L.files, L.hook_tokens, L.states, L.overrides, L.gone = {}, {}, {}, {}, {} end

-- The definition a request accepted by the C path was accepted under: its
-- run is handed to Lua only after the commit, and a reload in between may
-- have removed the cycle (the Lua path keeps the definition in the job).
-- L.gone holds the last definition of each removed cycle, one per name.
function L.def_of(name)
  local cy = R.cycles[name]
  return cy and cy.def or L.gone[name]
end

-- A fresh environment per file (see sandbox.lua).
L.sandbox = S.env

-- Runs a file; returns its object (a cycle or connector) or nil, message.
function L.load_file(path, text, allow_test)
  local env = L.sandbox(path, allow_test)
  local chunk, err = load(text, "@" .. path, "t", env)
  if not chunk then return nil, err end
  -- The top level runs as a step of its own: a file that runs away or
  -- allocates without bound fails to load, and the budget is cleared for
  -- the loader code that follows.
  local ok, obj = core.protect(chunk)
  if not ok then return nil, obj end
  if not S.made[obj] then -- (a table of the file's own could carry metamethods)
    return nil, path .. ":1: the file must return hw.cycle{...} or hw.connector{...}"
  end
  if obj.__kind == "cycle" and obj.name == nil then
    obj.name = path:match("([^/]+)%.lua$")
  end
  obj.file = path
  obj.where = obj.where or (path .. ":1")
  return obj
end

local function is_cycle_file(name)
  return name:match("%.lua$") and not name:match("_test%.lua$") and not name:match("^%.")
end

-- Reads the directory; returns true when any file changed, and the list
-- of what changed ({file, what}: added, changed, failed, removed) for the
-- reload log line.
function L.scan(dir)
  local list = core.listdir(dir) or {}
  local seen, changed, changes = {}, false, {}
  table.sort(list, function(a, b) return a.name < b.name end)
  for _, ent in ipairs(list) do
    if is_cycle_file(ent.name) then
      local path = dir .. "/" .. ent.name
      seen[path] = true
      local f = L.files[path]
      local sig = string.format("%.6f:%d", ent.mtime, ent.size)
      if not f or f.sig ~= sig then
        local text = core.readfile(path) or ""
        if not f or f.text ~= text or f.err then
          local obj, err = L.load_file(path, text)
          f = { path = path, text = text, obj = obj or (f and f.obj), err = err,
                order = ent.name, prev_sig = f and f.sig }
          if err then core.log("loader", err) end
          local old = L.files[path]
          changes[#changes + 1] = { file = ent.name, kept = err and old and old.obj ~= nil,
                                    what = err and "failed" or (old and "changed" or "added") }
          changed = true
        end
        f.sig = sig
        f.saved = true  -- saved since start: a connector file edit beats a PUT
        L.files[path] = f
      end
    end
  end
  for path in pairs(L.files) do
    if not seen[path] then
      L.files[path] = nil
      changed = true
      changes[#changes + 1] = { file = path:match("([^/]+)$"), what = "removed" }
    end
  end
  return changed, changes
end

local function token_for(cycle, step)
  local key = cycle .. "\0" .. step
  local tok = L.hook_tokens[key]
  if not tok then
    tok = core.token()
    if R.cfg.store == "postgres" then
      -- several nodes: the first node's token is every node's (same URLs)
      tok = require("hookwork.nodes").hook_token(cycle, step, tok)
    elseif R.cfg.mode ~= 2 then
      core.write("hook_insert", cycle, step, tok)
    end
    L.hook_tokens[key] = tok
  end
  return tok
end

local function build_connectors(sorted)
  local conns = { default = { name = "default", headers = {}, allowed_ips = {},
                              filter = core.ipfilter({}),
                              view = S.view({ name = "default", secrets = {} }, "tx.connector") } }
  for _, f in ipairs(sorted) do
    local o = f.obj
    if o and o.__kind == "connector" then
      if conns[o.name] and o.name ~= "default" then
        f.err = f.err or string.format("%s: connector '%s' is already defined", o.where, o.name)
      else
        local c = { name = o.name, file = f.path, base_url = o.base_url,
                    headers = o.headers, secrets = o.secrets,
                    allow_private = o.allow_private,
                    file_ips = o.allowed_ips, allowed_ips = o.allowed_ips,
                    filter = o.filter, load_error = f.err, sig = f.sig,
                    view = S.view({ name = o.name, base_url = o.base_url,
                                    secrets = o.secrets }, "tx.connector") }
        local ov = L.overrides[o.name]
        if ov and f.saved and ov.file_sig ~= f.sig then
          -- the file was saved after the PUT: the file's list wins again
          L.overrides[o.name] = nil
          if R.cfg.mode ~= 2 then core.write("connector_delete", o.name) end
        elseif ov then
          c.allowed_ips, c.filter, c.override = ov.list, ov.filter, true
        end
        conns[o.name] = c
      end
    end
  end
  -- the built-in default connector has no file: a PUT's list is all it has
  local d, ov = conns.default, L.overrides.default
  if ov and not d.file then
    d.allowed_ips, d.filter, d.override = ov.list, ov.filter, true
  end
  return conns
end

local function make_hooks(cy)
  local hooks = {}
  for _, s in ipairs(cy.def.steps) do
    if s.kind == "webhook" then
      hooks[s.name] = { token = token_for(cy.name, s.name), cycle = cy.name,
                        step = s.name, trigger = s.index == 1 }
    end
  end
  return hooks
end

local function cycle_state(name, autostart)
  local st = L.states[name]
  if not st then
    st = autostart and "running" or "stopped"
    L.states[name] = st
    if R.cfg.mode ~= 2 then core.write("cycle_state", name, st) end
  end
  return st
end

-- Rebuilds connectors, cycles and tokens from the loaded files.
function L.rebuild()
  local sorted = {}
  for _, f in pairs(L.files) do sorted[#sorted + 1] = f end
  table.sort(sorted, function(a, b) return a.order < b.order end)
  R.connectors = build_connectors(sorted)
  local cycles, tokens = {}, {}
  for _, f in ipairs(sorted) do
    local o = f.obj
    local err = f.err
    if o and o.__kind == "cycle" then
      if not R.connectors[o.connector] then
        err = err or string.format("%s: unknown connector '%s'", o.where, o.connector)
        o = f.good_cycle -- keep the last version that had its connector
      else
        f.good_cycle = o
      end
    end
    if o and o.__kind == "cycle" then
      if cycles[o.name] then
        err = string.format("%s: cycle '%s' is already defined in %s", o.where, o.name, cycles[o.name].file)
        cycles[f.path] = { name = f.path, file = f.path, state = "stopped", load_error = err, hooks = {} }
      else
        local cy = { name = o.name, file = f.path, def = o, load_error = err,
                     connector = o.connector }
        cy.state = cycle_state(o.name, o.autostart)
        cy.hooks = make_hooks(cy)
        for _, h in pairs(cy.hooks) do tokens[h.token] = h end
        cycles[o.name] = cy
      end
    elseif not o then
      local name = f.path:match("([^/]+)%.lua$")
      cycles[name] = cycles[name] or { name = name, file = f.path, state = "stopped",
                                       load_error = err, hooks = {} }
    end
  end
  for name, cy in pairs(R.cycles or {}) do
    if cy.def and not (cycles[name] and cycles[name].def) then L.gone[name] = cy.def end
  end
  for name, cy in pairs(cycles) do
    if cy.def then L.gone[name] = nil end
  end
  R.cycles, R.tokens = cycles, tokens
  L.sync_hooks()
end

-- The C accept path's copy of every webhook (core/hook.c), rebuilt
-- whenever what it holds changes: a reload, a start/stop, a connector PUT.
-- `fast`: a trigger with no feature only the Lua path has (cors, an hmac
-- payload function, a dedupe key function: docs/ARCHITECTURE.md); `sync`:
-- its caller waits for a `respond`.
function L.sync_hooks()
  if not core.hooks_set then return end
  local list = {}
  for token, h in pairs(R.tokens) do
    local cy = R.cycles[h.cycle]
    local def = cy and cy.def
    local st = def and def.steps[def.index[h.step] or 0]
    if st then
      local methods, fields = {}, nil
      for m in pairs(st.method_set) do methods[#methods + 1] = m end
      if st.spec then
        fields = {}
        for i, f in ipairs(st.spec) do
          fields[i] = { name = f.name, type = f.type, optional = f.optional }
        end
      end
      local conn = R.connectors[def.connector]
      list[#list + 1] = { token = token, cycle = h.cycle, step = h.step,
                          running = cy.state == "running", methods = methods,
                          ip_filtered = st.ip_filtered == true, filter = conn and conn.filter,
                          fields = fields, sync = st.sync == true, cors = st.cors ~= nil,
                          verify = st.verify, dedupe = st.dedupe,
                          -- verify and dedupe compiled to C (core/verify.c,
                          -- dedupe.c) go along; an hmac payload function, a
                          -- dedupe key function, dedupe on a synchronous
                          -- trigger (its first answer is recorded by the
                          -- Lua caller) and dedupe with several nodes (its
                          -- key claimed in the store first: D.claim) stay
                          -- on the Lua path
                          fast = st.index == 1 and not st.cors
                            and (not st.verify or st.verify.c ~= nil)
                            and (not st.dedupe or (st.dedupe.c ~= nil and not st.sync
                                                   and R.cfg.store ~= "postgres")) }
    end
  end
  core.hooks_set(list)
end

-- A store read at start-up: a failure (a damaged file) stops the start
-- with SQLite's own message rather than a nil index somewhere later.
function L.rows(name, ...)
  local rows, err = core.query(name, ...)
  if not rows then error("store: " .. tostring(err), 0) end
  return rows
end

-- Start-up: tokens, cycle states and connector overrides from the store.
function L.restore()
  for _, r in ipairs(L.rows("hooks_all")) do
    L.hook_tokens[r.cycle .. "\0" .. r.step] = r.token
  end
  for _, r in ipairs(L.rows("cycles_all")) do L.states[r.name] = r.state end
  for _, r in ipairs(L.rows("connectors_all")) do
    local list = U.decode(r.allowed_ips, "lax") or {}
    local filter = core.ipfilter(list)
    if filter then
      L.overrides[r.name] = { list = list, filter = filter, file_sig = r.file_sig }
    end
  end
end

function L.set_state(name, state)
  L.states[name] = state
  R.cycles[name].state = state
  core.write("cycle_state", name, state)
  L.sync_hooks()
  require("hookwork.nodes").touched("cycle", name) -- other nodes poll it
end

-- PUT /api/connectors/NAME: returns nil or an error message.
function L.put_connector(name, list)
  local c = R.connectors[name]
  local filter, err = core.ipfilter(list)
  if not filter then return err end
  L.overrides[name] = { list = list, filter = filter, file_sig = c.sig }
  c.allowed_ips, c.filter, c.override = list, filter, true
  core.write("connector_set", name, U.encode(list), c.sig)
  L.sync_hooks()
  require("hookwork.nodes").touched("conn", name) -- other nodes poll it
  return nil
end

return L
