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

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f reqs=%d non2xx=%d errs_connect=%d errs_read=%d errs_write=%d errs_timeout=%d secs=%.3f\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.requests, e.status,
    e.connect, e.read, e.write, e.timeout, secs))
end
