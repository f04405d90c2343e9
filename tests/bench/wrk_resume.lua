-- wrk script: resume random parked transactions.  POSTs
-- {"order_id":"B<r>","status":"Packed"} with r uniform in 1..WRK_N to the
-- mid-cycle webhook (the match is on order_id).
local n = tonumber(os.getenv("WRK_N") or "1000")
local prefix = os.getenv("WRK_PREFIX") or "B"
math.randomseed(os.time())

function request()
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" },
                    '{"order_id":"' .. prefix .. math.random(1, n) .. '","status":"Packed"}')
end

-- the RESULT line, shared by every bench script
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_done.lua")
