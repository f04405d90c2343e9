-- wrk script: park transactions with distinct match values.  Sends
-- {"order_id":"B<i>","amount":1} for i = 1, 2, ... and stops the (single)
-- thread once WRK_COUNT answers have come back, so ids B1..B<WRK_COUNT>
-- are all parked (a few more may be, from requests still in flight).
-- wrk itself waits out -d, so the thread then touches WRK_DONE_FILE and
-- run.sh ends wrk with SIGINT (which still prints the summary).
local count = tonumber(os.getenv("WRK_COUNT") or "1000")
local done_file = os.getenv("WRK_DONE_FILE")
local prefix = os.getenv("WRK_PREFIX") or "B"
-- wrk calls request() once before the run to check for pipelining
-- (script_verify_request), and that request is never sent: it gets B0.
local sent, got = -1, 0

function request()
  sent = sent + 1
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" },
                    '{"order_id":"' .. prefix .. sent .. '","amount":1}')
end

function response(status, headers, body)
  got = got + 1
  if got == count then
    if done_file then local f = io.open(done_file, "w"); if f then f:close() end end
    wrk.thread:stop()
  end
end

-- the RESULT line, shared by every bench script
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_done.lua")
