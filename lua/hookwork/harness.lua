-- harness: `hookwork test [PATH...]`.  Every *_test.lua file runs case by
-- case; each case gets a fresh store (a temporary directory), a fresh
-- registry with the cycles of the test file's directory, and fresh mocks.
-- The case body runs as a run (a coroutine), so t.post can wait for the
-- runs it starts while this loop drives the event loop.
local R = require "hookwork.runtime"
local L = require "hookwork.loader"
local T = require "hookwork.test"
local core = R.core
local H = {}

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

local function reset(dir)
  R.cycles, R.connectors, R.tokens = {}, {}, {}
  -- each module clears its own state
  require("hookwork.callers").reset()
  require("hookwork.run").reset()
  require("hookwork.accept").reset() -- its overlay, counters and ids
  require("hookwork.ops").reset()
  R.clock_offset = 0
  R.reset_metrics()
  L.reset()
  R.cfg.cycles_dir = dir
  R.cfg.public_base = T.ORIGIN -- hw.url: routed in-process by the mocks' transport
  L.scan(dir)
  L.rebuild()
end

-- Loads the test file and returns its cases ({name, fn}), or nil, error.
local function load_cases(path)
  local text, err = core.readfile(path)
  if not text then return nil, err end
  T._begin()
  local env = L.sandbox(path, true)
  local chunk, lerr = load(text, "@" .. path, "t", env)
  if not chunk then return nil, lerr end
  local ok, rerr = pcall(chunk)
  if not ok then return nil, tostring(rerr) end
  return T._cases()
end

local function run_case(path, k, E)
  local tmp = core.mkdtemp()
  local ok, err = core.store_open(tmp)
  if not ok then return false, err, tmp end
  reset(dirname(path))
  local cases, lerr = load_cases(path)
  if not cases then return false, lerr, tmp end
  local state = {}
  core.spawn(function()
    local cok, cerr = pcall(cases[k].fn)
    state.ok, state.err = cok, cerr
    if cok then state.ok, state.err = T._verdict() end
    state.done = true
  end)
  local deadline = core.now() + 60
  while not state.done do
    core.loop_once()
    if core.now() > deadline then return false, "case timed out after 60 s", tmp end
  end
  R.transport = nil
  return state.ok, state.err, tmp
end

function H.main(paths, E)
  if #paths == 0 then paths = { R.cfg.cycles_dir } end
  local files = {}
  local missing = 0
  for _, p in ipairs(paths) do
    if not core.listdir(p) and not core.readfile(p) then
      core.out(string.format("FAIL %s: no such file or directory\n", p))
      missing = missing + 1
    end
    for _, f in ipairs(core.find(p, "_test.lua")) do files[#files + 1] = f end
  end
  table.sort(files)
  local passed, failed, tmps = 0, missing, {}
  for _, file in ipairs(files) do
    local cases, err = load_cases(file)
    if not cases then
      failed = failed + 1
      core.out(string.format("FAIL %s: %s\n", file, err))
    else
      for k, c in ipairs(cases) do
        local ok, cerr, tmp = run_case(file, k, E)
        tmps[#tmps + 1] = tmp
        if ok then
          passed = passed + 1
          core.out("ok " .. c.name .. "\n")
        else
          failed = failed + 1
          core.out(string.format("FAIL %s: %s\n", c.name, tostring(cerr)))
        end
      end
    end
  end
  for _, t in ipairs(tmps) do core.rmtree(t) end
  core.out(string.format("%d passed, %d failed\n", passed, failed))
  return failed > 0 and 1 or 0
end

return H
