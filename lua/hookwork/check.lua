-- check: `hookwork check [--json] FILE...` loads and validates cycle and
-- connector files without serving.  Errors go to stderr as FILE:LINE:
-- message (or, with --json, one JSON document on stdout for editors and
-- CI).  Beyond what loading checks, it looks for mistakes that load but
-- cannot work: a connector that is not defined beside the file, a mid-cycle
-- match on a field the transaction never has, a jump to an unknown step.
local R = require "hookwork.runtime"
local L = require "hookwork.loader"
local U = require "hookwork.util"
local core = R.core
local K = {}

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

-- Connector names defined beside a file (its directory), for the check
-- that a cycle's connector exists.
local function connectors_near(path, cache)
  local dir = dirname(path)
  if cache[dir] then return cache[dir] end
  local names = { default = true }
  for _, ent in ipairs(core.listdir(dir) or {}) do
    if ent.name:match("%.lua$") and not ent.name:match("_test%.lua$") then
      local p = dir .. "/" .. ent.name
      local obj = L.load_file(p, core.readfile(p) or "")
      if obj and obj.__kind == "connector" then names[obj.name] = true end
    end
  end
  cache[dir] = names
  return names
end

local function with_position(path, msg)
  msg = tostring(msg)
  if msg:find("^[^\n]-:%d+:") then return msg end
  return path .. ":1: " .. msg
end

-- The top-level data names a transaction surely has when it reaches step
-- i, or nil when code (a step or a decision) could have set anything.
local function known_names(c, upto)
  local trig = c.steps[1]
  if not trig.spec then return nil end -- every top-level field is copied
  local names = {}
  for i = 1, upto - 1 do
    local s = c.steps[i]
    if s.kind == "step" then return nil end
    if s.kind == "webhook" then
      for _, f in ipairs(s.spec or {}) do names[f.path[1]] = true end
      if s.index > 1 and not s.spec then return nil end
    elseif s.kind == "map" then
      for target in pairs(s.fields) do names[U.split_path(target)[1]] = true end
    elseif s.kind == "request" then
      names[s.save_as or s.name] = true
    end
  end
  return names
end

-- Problems that load fine but cannot work; returns a list of messages.
local function lint(c)
  local out = {}
  for i, s in ipairs(c.steps) do
    if s.kind == "webhook" and i > 1 and s.match then
      local names = known_names(c, i)
      local first = U.split_path(s.match.transaction)[1]
      if names and not names[first] then
        local list = {}
        for n in pairs(names) do list[#list + 1] = n end
        table.sort(list)
        out[#out + 1] = string.format("%s: webhook '%s': match field '%s' is never in the transaction's "
          .. "data (it has %s)%s", s.where, s.name, s.match.transaction,
          #list > 0 and table.concat(list, ", ") or "no fields", U.did_you_mean(first, list))
      end
    end
    for _, key in ipairs({ "on_false", "on_error" }) do
      local target = s[key]
      if type(target) == "string" and target ~= "stop" then
        local j = c.index[target]
        if not j then
          out[#out + 1] = string.format("%s: step '%s': %s names no step '%s'%s", s.where, s.name, key,
                                        target, U.did_you_mean(target, c.index))
        elseif j <= i then
          out[#out + 1] = string.format("%s: step '%s': %s step '%s' must come later", s.where,
                                        s.name, key, target)
        end
      end
    end
  end
  return out
end

-- Checks one file; returns {file, kind, name} and a list of messages.
local function check_file(path, cache)
  local text, rerr = core.readfile(path)
  if not text then return nil, { path .. ":1: " .. tostring(rerr) } end
  if path:match("_test%.lua$") then
    local chunk, lerr = load(text, "@" .. path, "t", L.sandbox(path, true))
    if not chunk then return nil, { with_position(path, lerr) } end
    return { kind = "test file", name = path:match("([^/]+)$") }, {}
  end
  local obj, err = L.load_file(path, text)
  if not obj then return nil, { with_position(path, err) } end
  local msgs = {}
  if obj.__kind == "cycle" then
    if not connectors_near(path, cache)[obj.connector] then
      msgs[#msgs + 1] = string.format("%s: unknown connector '%s'%s", obj.where, obj.connector,
                                      U.did_you_mean(obj.connector, connectors_near(path, cache)))
    end
    for _, m in ipairs(lint(obj)) do msgs[#msgs + 1] = m end
  end
  return { kind = obj.__kind, name = obj.name }, msgs
end

function K.main(args)
  local files, as_json = {}, false
  for _, a in ipairs(args) do
    if a == "--json" then as_json = true else files[#files + 1] = a end
  end
  local bad, cache = 0, {}
  local report = { files = {}, diagnostics = {} }
  for _, path in ipairs(files) do
    local obj, msgs = check_file(path, cache)
    for _, m in ipairs(msgs) do
      bad = bad + 1
      local file, line, text = m:match("^(.-):(%d+): (.*)$")
      report.diagnostics[#report.diagnostics + 1] = { file = file or path, line = tonumber(line) or 1,
                                                      message = text or m, severity = "error" }
      if not as_json then core.errout(m .. "\n") end
    end
    report.files[#report.files + 1] = { file = path, ok = #msgs == 0, kind = obj and obj.kind or U.null,
                                        name = obj and obj.name or U.null }
    if #msgs == 0 and not as_json then
      core.out(string.format("%s: ok (%s '%s')\n", path, obj.kind, obj.name))
    end
  end
  if as_json then
    U.json.array(report.diagnostics); U.json.array(report.files)
    core.out(U.encode(report) .. "\n")
  end
  return bad > 0 and 1 or 0
end

return K
