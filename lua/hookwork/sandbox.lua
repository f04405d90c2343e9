-- sandbox: the environment a cycle file runs in, and the read-only views
-- it gets of the engine's modules.  Each file has its own environment
-- (copies of the safe libraries) and its own view of `hookwork`, so no
-- file can change what another sees; the views hide the engine's tables.
-- The C side (core/sandbox.c) gives the confined coroutine library, the
-- setmetatable that refuses __gc and the getenv that hides HOOKWORK_*.
local core = require "hookwork.core"
local S = {}

local C = core.sandbox()

local SAFE_GLOBALS = { "assert", "error", "ipairs", "next", "pairs", "select", "tonumber", "tostring", "type", "rawequal", "rawget",
  "rawlen", "_VERSION" }
local SAFE_LIBS = { "string", "table", "math", "utf8", "os" }

-- The cycles and connectors hw made (weak keys): a file's result must be
-- one of them, never a table of the file's own.
S.made = setmetatable({}, { __mode = "k" })

-- Views made by S.view: rawset on one is refused too.
local VIEWS = setmetatable({}, { __mode = "k" })

local function readonly(name, k)
  error(string.format("%s.%s is read-only", name, tostring(k)), 3)
end

-- A read-only view of t (tables inside it become views too): reads see
-- t's values as they were, writes raise, and the table behind it cannot
-- be reached.  Built once per file (or per connector), so a file only ever
-- holds its own views.  Raw traversal: no metamethod of t runs here.
function S.view(t, name, seen)
  seen = seen or {}
  if seen[t] then return seen[t] end
  local inner, proxy = {}, {}
  seen[t] = proxy
  for k, v in next, t do
    if type(v) == "table" then v = S.view(v, name .. "." .. tostring(k), seen) end
    inner[k] = v
  end
  -- a function __index on the original (hw.verify's "no such scheme")
  -- still answers misses; a table __index would expose engine tables
  local mt = getmetatable(t)
  if type(mt) == "table" and type(mt.__index) == "function" then
    setmetatable(inner, { __index = mt.__index })
  end
  VIEWS[proxy] = true
  return setmetatable(proxy, {
    __index = inner,
    __newindex = function(_, k) readonly(name, k) end,
    __len = function() return #inner end,
    __pairs = function() return function(_, k) return next(inner, k) end, proxy, nil end,
    __metatable = "read-only",
  })
end

-- A fresh environment per file: copies of the safe libraries, `require`
-- for hookwork only (a view per file), `load` for text chunks only, no io,
-- debug, package or os.execute/exit.
function S.env(path, allow_test)
  local env = {}
  for _, k in ipairs(SAFE_GLOBALS) do env[k] = _G[k] end
  for _, lib in ipairs(SAFE_LIBS) do
    local copy = {}
    for k, v in pairs(_G[lib]) do copy[k] = v end
    env[lib] = copy
  end
  local co = {}
  for k, v in pairs(C.coroutine) do co[k] = v end
  env.coroutine = co
  env.os.getenv = C.getenv
  env.setmetatable = C.setmetatable
  env.getmetatable = C.getmetatable
  env.pcall, env.xpcall = C.pcall, C.xpcall
  env.rawset = function(t, k, v)
    if VIEWS[t] then readonly("hookwork", k) end
    return rawset(t, k, v)
  end
  env._G = env
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    core.log(path, table.concat(parts, "\t"))
  end
  -- strftime once per conversion, in C: charged per byte of the format
  local date = os.date
  env.os.date = function(fmt, t)
    if type(fmt) == "string" then core.charge(16 * #fmt) end
    return date(fmt, t)
  end
  local views = {}
  local function view_of(name, module)
    views[name] = views[name] or S.view(require(module), name)
    return views[name]
  end
  env.require = function(name)
    if name == "hookwork" then return view_of("hookwork", "hookwork") end
    if name == "hookwork.test" and allow_test then return view_of("hookwork.test", "hookwork.test") end
    if name == "cjson" then return view_of("cjson", "hookwork.jsonlib") end
    error("module '" .. tostring(name) .. "' is not available to cycles", 2)
  end
  -- The parser is C the count hook cannot see: its work (about two
  -- instructions' worth per byte) is charged to the step's budget.
  env.load = function(chunk, name, mode, e)
    if mode ~= nil and mode ~= "t" then error("load: only text chunks are allowed", 2) end
    if type(chunk) == "string" then
      if chunk:byte(1) == 27 then return nil, "load: binary chunks are not allowed" end
      core.charge(2 * #chunk)
    elseif type(chunk) == "function" then
      local read = chunk
      chunk = function()
        local piece = read()
        if type(piece) == "string" then core.charge(2 * #piece) end
        return piece
      end
    end
    return load(chunk, name, "t", e or env)
  end
  return env
end

return S
