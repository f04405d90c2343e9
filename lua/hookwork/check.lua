-- check: `hookwork check FILE...` loads and validates cycle and connector
-- files without serving.  Errors go to stderr as FILE:LINE: message.
local R = require "hookwork.runtime"
local L = require "hookwork.loader"
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

function K.main(files)
  local bad, cache = 0, {}
  for _, path in ipairs(files) do
    local text, rerr = core.readfile(path)
    local obj, err
    if not text then err = path .. ":1: " .. tostring(rerr)
    elseif path:match("_test%.lua$") then
      local chunk, lerr = load(text, "@" .. path, "t", L.sandbox(path, true))
      err = lerr
      obj = chunk and { __kind = "test file", name = path:match("([^/]+)$") }
    else obj, err = L.load_file(path, text) end
    if obj and obj.__kind == "cycle" and not connectors_near(path, cache)[obj.connector] then
      err = string.format("%s: unknown connector '%s'", obj.where, obj.connector)
    end
    if err then
      bad = bad + 1
      core.errout(with_position(path, err) .. "\n")
    else
      core.out(string.format("%s: ok (%s '%s')\n", path, obj.__kind, obj.name))
    end
  end
  return bad > 0 and 1 or 0
end

return K
