-- callers: whoever waits for an answer to a webhook request: an HTTP
-- request held by the server (a light userdata), or an in-process caller
-- (the test harness).  Each is answered exactly once: by the run, by the
-- sync_timeout (504), or at shutdown (503).
local R = require "hookwork.runtime"
local U = require "hookwork.util"
local Ans = require "hookwork.answers"
local core = R.core
local C = {}
local waiting = {} -- callers not answered yet (the sync_timeout tick, shutdown)

-- Test harness: no caller waits any more.
function C.reset() waiting = {} end

function C.new(h, cycle, step, fn)
  local c = { h = h, fn = fn, cycle = cycle, step = step }
  waiting[c] = true
  return c
end

-- Still waiting for the run's answer (not answered, not handed a 202 with a
-- status URL).
function C.pending(c) return c ~= nil and not c.done and not c.handed end

-- The caller no longer waits for the run (on_sync_timeout = "accept"): the
-- run keeps its answer for the status URL; whoever handed it over answers
-- it once, with C.answer.
function C.hand_over(c)
  c.handed, c.deadline = true, nil
  waiting[c] = nil
end

function C.answer(c, status, ctype, headers, body)
  if c.done then return end
  c.done = true
  waiting[c] = nil
  if c.on_answer then c.on_answer(status, ctype, headers, body) end -- dedupe keeps it
  if c.cors then
    headers = headers and { table.unpack(headers) } or {}
    for _, h in ipairs(c.cors) do headers[#headers + 1] = h end
  end
  R.count(R.metrics.webhook, (c.cycle or "-") .. "\0" .. (c.step or "-") .. "\0" .. status)
  if c.h then
    core.answer(c.h, status, ctype, headers, body)
  elseif c.fn then
    c.fn(status, ctype, headers, body)
  end
end

function C.json(c, status, obj, headers)
  C.answer(c, status, "application/json", headers, U.encode(obj))
end

-- Sends an answer from the answers table (status, body, headers): a table
-- body as JSON, a string body as the JSON text it already is, no body as
-- an empty one without a Content-Type.
function C.send(c, status, body, headers)
  if body == nil then return C.answer(c, status, nil, headers, "") end
  if type(body) == "string" then return C.answer(c, status, "application/json", headers, body) end
  return C.json(c, status, body, headers)
end

function C.tick(now)
  for c in pairs(waiting) do
    if c.deadline and c.deadline <= now and c.on_timeout then
      c.on_timeout(c, now)
    elseif c.deadline and c.deadline <= now then
      C.send(c, Ans.timeout(c.timeout, c.tx))
    end
  end
end

-- At the shutdown deadline: a caller whose request is stored is told so
-- (202: its run goes on after the restart); 503 only for what was not.
function C.shutdown()
  for c in pairs(waiting) do
    if c.stored then
      C.send(c, Ans.stored_at_shutdown(c.tx))
    else
      C.send(c, Ans.shutting_down())
    end
  end
end

return C
